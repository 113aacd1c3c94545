#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs what the tests need (the Python GELF client graypy; headless Chromium, its driver
# and Python selenium for the web UI test), checks formatting and lints, then runs every test
# of the workspace, the end-to-end tests of the real binary included.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are kept outside the checkout, so a fresh clone on the same machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peng/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! python3 -c 'import graypy' 2>/dev/null; then
  echo "installing graypy (the GELF client the end-to-end test sends with)"
  python3 -m pip install --quiet --disable-pip-version-check graypy
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (the browser the web UI test drives)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "installing selenium (the Python browser driver of the web UI test)"
  python3 -m pip install --quiet --disable-pip-version-check selenium
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/peng-test.log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed; [0-9]+ failed' "${TMPDIR:-/tmp}/peng-test.log" \
  | awk '{p+=$4; f+=$6} END {print p+0, f+0}')
echo "${passed% *} passed, ${passed#* } failed"
exit "$status"
