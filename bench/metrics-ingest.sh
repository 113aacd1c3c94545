#!/usr/bin/env bash
# The metrics-ingest benchmark: peng (release) takes Telegraf-like metrics through its InfluxDB
# API, next to InfluxDB 1.6 and VictoriaMetrics taking the same line protocol in the same run.
# See bench/README.md.
#
#   bench/metrics-ingest.sh                            # build, then 100 hosts over 8 hours
#   bench/metrics-ingest.sh --hosts 10 --hours 1       # a quick check
#   bench/metrics-ingest.sh --no-build --systems peng,influxdb --json /tmp/metrics-ingest.json
#
# Builds peng and the benchmark in release (--no-build: the benchmark only). InfluxDB
# (`influxd`, Debian's influxdb) and VictoriaMetrics (Debian's victoria-metrics) are not
# installed by it: a missing one is left out, with a note. Every other argument goes to the
# benchmark (`metrics-ingest --help`). On a shared machine run it under `nice -n 19`:
# everything it starts inherits that, peng and the peers alike.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

build_peng=1
args=()
for a in "$@"; do
  case "$a" in
    --no-build) build_peng="" ;;
    *) args+=("$a") ;;
  esac
done
given() { # whether the benchmark's option $1 is among the arguments
  local a
  for a in "${args[@]+"${args[@]}"}"; do
    case "$a" in "$1" | "$1"=*) return 0 ;; esac
  done
  return 1
}

if [ -n "$build_peng" ]; then
  cargo build --release -p peng -p peng-bench
else
  cargo build --release -p peng-bench
fi

if ! given --peng; then
  args+=(--peng "$target/release/peng")
fi
exec "$target/release/metrics-ingest" "${args[@]}"
