#!/usr/bin/env bash
# The README's test command: runs every test of the workspace and closes with one line
#   tests: N passed, N failed, N skipped
# where "skipped" counts the tests that could not run here (no root, a missing tool) instead
# of counting them as passed.
#
# As root it first installs what the tests need (the Debian packages in
# .ci/apt-packages.txt, only those missing), so the end-to-end tests in network namespaces
# run for real. Not as root it runs the rest and says how to run everything:
#   sudo scripts/test.sh
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p netnat-engine`).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

missing_packages() {
  local p
  for p in $(sed -e 's/#.*//' .ci/apt-packages.txt); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

if [ "$(id -u)" -eq 0 ]; then
  mapfile -t need < <(missing_packages)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "scripts/test.sh: installing the packages the tests need: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null || {
      echo "scripts/test.sh: apt-get could not install ${need[*]}; install them and run again" >&2
      exit 1
    }
  fi
else
  echo "scripts/test.sh: not root: the end-to-end tests (network namespaces, NFQUEUE) will be skipped; run 'sudo scripts/test.sh' to run them"
fi

skips="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$skips" "$log"' EXIT
NETNAT_SKIP_LOG="$skips" cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# cargo prints one "test result: ..." line per test binary.
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) }
  } END { print p + 0, f + 0 }' "$log")
skipped=$(wc -l <"$skips")
passed=$((passed - skipped))
if [ "$skipped" -gt 0 ]; then
  echo
  echo "scripts/test.sh: skipped tests and why:"
  sed 's/^/  /' "$skips"
fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -eq 0 ]; then
  echo "scripts/test.sh: no test ran" >&2
  exit 1
fi
exit "$status"
