#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs what the tests need (the MariaDB server and client the database tests start private
# servers from; bubblewrap, which sandboxes instances when the tests run as root; the Python GELF client graypy; PyMySQL for the example service; a JDK
# and Debian's log4j2, whose GelfLayout is the Java GELF client of the end-to-end tests; headless
# Chromium, its driver and Python selenium for the web UI test; InfluxDB 1.6, its `influx` CLI
# and the Python influxdb client for the metrics API test), checks formatting and lints,
# then runs every test of the workspace, the end-to-end tests of the real binary included.
# Every server a test starts (peng, mariadbd, influxd) binds 127.0.0.1 on a free port in a temporary
# directory and is stopped by the test.
# Last, scripts/walkthrough.sh runs the README's walk-through as a user would: in a copy of the
# repository, `cargo run --release -p peng -- serve` with the relative ./peng-data, and the
# "Five minutes with the example" lines exactly as written, checking what each promises. It runs
# after `cargo test`, not inside it: its release build would wait for the build directory's lock.
# The suite fails when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are kept outside the checkout, so a fresh clone on the same machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peng/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-install-db >/dev/null \
  || ! command -v mariadb-dump >/dev/null || ! command -v mariadb >/dev/null; then
  # Tests never use the package's own server, only private ones on temporary directories.
  echo "installing mariadb-server and mariadb-client (the database tests start private servers)"
  apt_install mariadb-server mariadb-client
fi

if [ ! -x /usr/bin/bwrap ]; then
  echo "installing bubblewrap (instances run sandboxed when peng runs as root)"
  apt_install bubblewrap
fi

if ! /usr/bin/python3 -c 'import pymysql' 2>/dev/null; then
  # Sandboxed instances see the system's /usr only: the example service needs Debian's PyMySQL.
  echo "installing python3-pymysql (the example service's MariaDB client, inside the sandbox)"
  apt_install python3-pymysql
fi

if ! python3 -c 'import graypy' 2>/dev/null; then
  echo "installing graypy (the GELF client the end-to-end test sends with)"
  python3 -m pip install --quiet --disable-pip-version-check graypy
fi

if ! command -v javac >/dev/null || ! command -v java >/dev/null; then
  # default-jre-headless has no javac; the JDK brings both.
  echo "installing default-jdk-headless (the end-to-end test compiles and runs a Java GELF client)"
  apt_install default-jdk-headless
fi

if [ ! -f /usr/share/java/log4j-api.jar ] || [ ! -f /usr/share/java/log4j-core.jar ]; then
  echo "installing liblog4j2-java (log4j2's GelfLayout, the Java GELF client of the end-to-end test)"
  apt_install liblog4j2-java
fi

if ! python3 -c 'import pymysql' 2>/dev/null; then
  echo "installing PyMySQL (the MariaDB client of the example service)"
  python3 -m pip install --quiet --disable-pip-version-check pymysql
fi

if [ ! -x /usr/bin/influxd ] || [ ! -x /usr/bin/influx ]; then
  # The metrics test runs the same writes and queries against InfluxDB 1.6 with its CLI.
  echo "installing influxdb and influxdb-client (InfluxDB 1.6 and its CLI, for the differential metrics test)"
  apt_install influxdb influxdb-client
fi

if ! python3 -c 'import influxdb' 2>/dev/null; then
  echo "installing influxdb (the Python InfluxDB client of the metrics test)"
  python3 -m pip install --quiet --disable-pip-version-check influxdb
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (the browser the web UI test drives)"
  apt_install chromium chromium-driver
fi

if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "installing selenium (the Python browser driver of the web UI test)"
  python3 -m pip install --quiet --disable-pip-version-check selenium
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Both run, whatever the other's outcome; the summary names both.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/peng-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed; [0-9]+ failed' "${TMPDIR:-/tmp}/peng-test.log" \
  | awk '{p+=$4; f+=$6} END {print p+0, f+0}')

set +e
scripts/walkthrough.sh 2>&1 | tee "${TMPDIR:-/tmp}/peng-walkthrough.log"
walkthrough_status=${PIPESTATUS[0]}
set -e
walkthrough=$(grep -Eo 'walkthrough: (passed|FAILED) (in|after) [0-9]+s' "${TMPDIR:-/tmp}/peng-walkthrough.log" \
  | tail -n 1 | sed 's/^walkthrough: //')

echo "${passed% *} passed, ${passed#* } failed; README walk-through: ${walkthrough:-FAILED (exit $walkthrough_status)}"
if [ "$status" -eq 0 ]; then status=$walkthrough_status; fi
exit "$status"
