#!/usr/bin/env bash
# Builds netnat.exe and every test binary of the workspace for x86_64-pc-windows-gnu (mingw) and
# runs every test that can run on Windows under Wine: the engine, capture (pcap, the WinDivert
# filter builder checked by WinDivert's own compiler and evaluator, batch splitting), the named
# pipe control channel, the state store under %ProgramData%, the replay CLI and scenarios, and
# `netnat daemon` without a WinDivert driver. Closes with
#   windows-wine: N passed, N failed, N skipped by design (...)
# and fails if any test fails. Idempotent: installs only what is missing, reuses the build.
#
# What cannot run here, by design:
#   - Linux-only code is not compiled for Windows (NFQUEUE, netns end-to-end tests, Unix
#     sockets and modes): counted by .ci/wine/linux_only_tests.py from the cfg gates.
#   - Tests ignored on Windows with a reason (tshark is a Linux program), and checks Wine does
#     not implement (file DACLs, FILE_FLAG_FIRST_PIPE_INSTANCE): they record a skip.
#   - The WinDivert kernel driver never loads under Wine: no packet is diverted here. This
#     script also builds a stand-in WinDivert.dll (tools/windivert-emu/) into
#     target/x86_64-pc-windows-gnu/debug/windivert-emu/, with which scripts/test.sh (as root)
#     runs the article's walk-through through netnat.exe in namespaces (e2e_windows_emulated);
#     docs/windows.md says where that emulation differs from the driver.
#
# Needs: apt (wine, wine64, gcc-mingw-w64-x86-64), rustup's x86_64-pc-windows-gnu std (or, without
# rustup, Debian's rustc-web + rust-web-src with -Zbuild-std), python3.
# Duration (measured 2026-12-02, 2 shared cores at load average ~5, packages installed, crates
# downloaded, empty target dir and Wine prefix): 375 s = build 283 s + Wine runs 92 s (wineboot
# included). Warm (nothing to rebuild): about 100 s. Installing wine/mingw from apt adds ~50 s.
#
# Usage: .ci/windows-wine.sh   (from anywhere; CARGO_TARGET_DIR is honoured)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
started=$SECONDS
target=x86_64-pc-windows-gnu
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="$target_dir/$target/debug"

# --- what the build and the runs need ---------------------------------------------------------
need=()
command -v wine >/dev/null 2>&1 || need+=(wine)
[ -x /usr/lib/wine/wine64 ] || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "windows-wine: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

cargo=(cargo)
build_std=()
if command -v rustup >/dev/null 2>&1 && { rustup target list --installed | grep -qx "$target" ||
     rustup target add "$target" >/dev/null; }; then
  : # rustup's prebuilt std for the target: no -Zbuild-std needed
else
  echo "windows-wine: no rustup std for $target; building std from Debian's rust source (-Zbuild-std)"
  if ! [ -x /usr/bin/rustc ] || ! [ -d /usr/lib/rustlib/src/rust/library/std ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src </dev/null >/dev/null
  fi
  export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
  cargo=(/usr/bin/cargo)
  build_std=(-Zbuild-std=std,panic_abort,test)
fi

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
# C code built for the target: criterion's alloca, windivert-sys's vendored WinDivert.dll.
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar

# --- build ---------------------------------------------------------------------------------------
build_start=$SECONDS
echo "windows-wine: building the workspace's test binaries and netnat.exe for $target"
artifacts="$target_dir/windows-wine-artifacts.json"
mkdir -p "$target_dir"
# windivert-vendored: WinDivert.dll (filter compiler and evaluator included) from source.
"${cargo[@]}" test --workspace --no-run --target "$target" "${build_std[@]}" \
  --features netnat-capture/windivert-vendored --message-format=json-render-diagnostics >"$artifacts"
mapfile -t exes < <(python3 - "$artifacts" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        print(m["executable"])
EOF
)
windivert_out=$(python3 - "$artifacts" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "build-script-executed" and "windivert-sys" in m["package_id"]:
        print(m["out_dir"])
EOF
)
[ -f "$out/netnat.exe" ] || { echo "windows-wine: $out/netnat.exe was not built" >&2; exit 1; }
[ -f "$windivert_out/WinDivert.dll" ] || { echo "windows-wine: WinDivert.dll not built (windivert-sys vendored)" >&2; exit 1; }

# Wine 8.0 has no bcryptprimitives.dll (Rust's std needs its ProcessPrng): see the C file.
shim="$out/bcryptprimitives.dll"
if ! [ "$shim" -nt .ci/wine/bcryptprimitives.c ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" .ci/wine/bcryptprimitives.c -ladvapi32
fi
# Windows loads DLLs from the .exe's own directory first.
for dir in $(printf '%s\n' "$out/netnat.exe" "${exes[@]}" | xargs -n1 dirname | sort -u); do
  [ "$dir" = "$out" ] || cp -u "$shim" "$dir/"
  cp -u "$windivert_out/WinDivert.dll" "$dir/"
done
# The stand-in WinDivert.dll of the emulated end-to-end test (tests/e2e_windows_emulated.rs,
# run later by scripts/test.sh as root): WinDivert's own user-mode source from windivert-sys's
# vendor/ directory with the device functions relayed (tools/windivert-emu/README.md). Kept in
# its own directory so the real vendored WinDivert.dll beside the binaries stays what it is.
windivert_vendor=$(python3 - "$artifacts" <<'EOF'
import json, os, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "windivert-sys" in m["package_id"]:
        print(os.path.join(os.path.dirname(m["manifest_path"]), "vendor"))
        break
EOF
)
bash tools/windivert-emu/build.sh "$windivert_vendor" "$out/windivert-emu"
echo "windows-wine: built ${#exes[@]} test binaries and the stand-in WinDivert.dll ($out/windivert-emu) in $((SECONDS - build_start)) s"

# --- run under Wine ---------------------------------------------------------------------------
export WINEPREFIX="$target_dir/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" WINEARCH=win64
trap 'wineserver -k 2>/dev/null || true' EXIT
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  wineboot -i >/dev/null 2>&1
fi
run_start=$SECONDS
logs="$target_dir/windows-wine-logs"
rm -rf "$logs"
mkdir -p "$logs"
skips="$logs/skipped.txt"
: >"$skips"
# The tests see Windows paths: Z: is the Unix root under Wine.
export NETNAT_SKIP_LOG="Z:${skips//\//\\}"
passed=0 failed=0 ignored=0 broken=()
for exe in "${exes[@]}"; do
  name=$(basename "$exe" .exe)
  log="$logs/$name.log"
  status=0
  (cd "$(dirname "$exe")" && timeout 600 wine "$exe" --test-threads=2 </dev/null >"$log" 2>&1) || status=$?
  result=$(grep -E '^test result:' "$log" | tail -1 || true)
  if [ -z "$result" ]; then
    broken+=("$name (exit $status, no test result; see $log)")
    continue
  fi
  read -r p f i < <(echo "$result" | awk '{ for (k = 1; k <= NF; k++) {
      if ($(k) ~ /^passed;?$/) p = $(k-1); if ($(k) ~ /^failed;?$/) f = $(k-1); if ($(k) ~ /^ignored;?$/) i = $(k-1) }
    } END { print p + 0, f + 0, i + 0 }')
  passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
  if [ "$status" -ne 0 ] || [ "$f" -gt 0 ]; then
    broken+=("$name (exit $status, $f failed; see $log)")
    grep -E '^test .* FAILED$|^---- ' "$log" | sed 's/^/    /' || true
  fi
done
recorded=$(wc -l <"$skips")
passed=$((passed - recorded)) # a recorded skip returns, so the harness counted it as passed
mapfile -t linux_only < <(python3 .ci/wine/linux_only_tests.py "$repo")
compiled_out=${linux_only[-1]#total }

echo
echo "windows-wine: ignored on Windows, with the reason:"
grep -h -E '^test .* \.\.\. ignored' "$logs"/*.log | sed 's/^test /  /' | sort -u || true
if [ "$recorded" -gt 0 ]; then
  echo "windows-wine: checks Wine (or this host) cannot make, recorded as skipped:"
  sed 's/^/  /' "$skips"
fi
echo "windows-wine: Linux/Unix-only tests not compiled for Windows (per file):"
printf '  %s\n' "${linux_only[@]:0:${#linux_only[@]}-1}"
if [ ${#broken[@]} -gt 0 ]; then
  echo "windows-wine: failing test binaries:" >&2
  printf '  %s\n' "${broken[@]}" >&2
fi
echo
echo "windows-wine: build $((run_start - build_start)) s, Wine runs $((SECONDS - run_start)) s, total $((SECONDS - started)) s"
echo "windows-wine: $passed passed, $failed failed, $((ignored + recorded + compiled_out)) skipped by design" \
     "($ignored ignored on Windows, $recorded not checkable under Wine, $compiled_out Linux-only not compiled)"
if [ ${#broken[@]} -gt 0 ] || [ "$failed" -gt 0 ]; then
  exit 1
fi
if [ "$passed" -eq 0 ]; then
  echo "windows-wine: no test ran" >&2
  exit 1
fi
