#!/usr/bin/env bash
# Builds the stand-in WinDivert.dll (windivert_emu.c + WinDivert 2.2.2's own user-mode source)
# with mingw. Usage:
#   tools/windivert-emu/build.sh WINDIVERT_VENDOR_DIR OUT_DIR
# WINDIVERT_VENDOR_DIR is windivert-sys's vendor/ directory (with dll/ and include/), e.g.
# ~/.cargo/registry/src/*/windivert-sys-0.10.0/vendor; .ci/windows-wine.sh finds it from the
# build's metadata and writes OUT_DIR=target/x86_64-pc-windows-gnu/debug/windivert-emu.
# Rebuilds only when the DLL is older than its sources.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendor="${1:?usage: build.sh WINDIVERT_VENDOR_DIR OUT_DIR}"
out="${2:?usage: build.sh WINDIVERT_VENDOR_DIR OUT_DIR}"
for f in dll/windivert.c dll/windivert.def include/windivert.h; do
  [ -f "$vendor/$f" ] || { echo "windivert-emu: $vendor/$f not found (is $vendor windivert-sys's vendor/ directory?)" >&2; exit 1; }
done
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "windivert-emu: x86_64-w64-mingw32-gcc not found (apt-get install gcc-mingw-w64-x86-64)" >&2; exit 1; }
mkdir -p "$out"
dll="$out/WinDivert.dll"
if [ "$dll" -nt "$here/windivert_emu.c" ] && [ "$dll" -nt "$vendor/dll/windivert.c" ] && [ "$dll" -nt "$here/build.sh" ]; then
  exit 0
fi
# -Wno-unused-function: WinDivert's own device functions are renamed (WinDivertDriver*) and
# kept for the case without NETNAT_WINDIVERT_EMU; some of its static helpers go unused.
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Werror -Wno-pointer-to-int-cast -Wno-unused-function \
  -I"$vendor/include" -I"$vendor/dll" -o "$dll" "$here/windivert_emu.c" "$vendor/dll/windivert.def" \
  -lws2_32 -ladvapi32
# Same export names as WinDivert's own windivert.def: netnat.exe imports them by name.
# (awk reads to the end: an early exit would kill objdump with SIGPIPE under pipefail.)
exports=$(x86_64-w64-mingw32-objdump -p "$dll" | awk '/\[Ordinal\/Name Pointer\] Table/ {on = 1; next} on && NF == 0 {on = 0; done = 1} on && !done {print $NF}' | sort)
expected=$(tr -d '\r' <"$vendor/dll/windivert.def" | sed -n '/^EXPORTS/,$p' | tail -n +2 | awk 'NF {print $1}' | sort)
if [ "$exports" != "$expected" ]; then
  echo "windivert-emu: $dll does not export what windivert.def lists:" >&2
  diff <(echo "$expected") <(echo "$exports") >&2 || true
  rm -f "$dll"
  exit 1
fi
