#!/usr/bin/env bash
# The log-ingest benchmark: peng (release) takes the same Java-services GELF messages over
# HTTP and TCP, next to tantivy-cli and syslog-ng in the same run. See bench/README.md.
#
#   bench/log-ingest.sh                          # build, then 1,000,000 messages
#   bench/log-ingest.sh --messages 2000          # a quick check
#   bench/log-ingest.sh --no-build --peng /path/to/peng --json /tmp/log-ingest.json
#
# Builds peng and the benchmark in release (--no-build: the benchmark only), installs
# tantivy-cli under ~/.cache/peng/tools when `tantivy` is not found, and leaves syslog-ng out
# (with a note) when it is not installed. Every other argument goes to the benchmark
# (`log-ingest --help`). On a shared machine run it under `nice -n 19`: everything it starts
# inherits that, peng and the peers alike.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
tools="$HOME/.cache/peng/tools"

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

if ! given --tantivy && ! command -v tantivy >/dev/null && [ ! -x "$tools/bin/tantivy" ]; then
  echo "log-ingest.sh: installing tantivy-cli 0.24.0 into $tools (once)" >&2
  # Not --locked: the lock file tantivy-cli 0.24.0 was published with pins traitobject 0.1.0,
  # which current Rust refuses (E0119, conflicting implementations); unlocked, cargo takes
  # traitobject 0.1.1 and the newest tantivy 0.24.x, the version peng's own index uses.
  cargo install tantivy-cli --version 0.24.0 --root "$tools"
fi

if ! given --peers && ! given --syslog-ng && ! command -v syslog-ng >/dev/null \
  && [ ! -x /usr/sbin/syslog-ng ]; then
  echo "log-ingest.sh: syslog-ng is not installed, so it is left out" \
    "(apt-get install --no-install-recommends syslog-ng-core adds it)" >&2
  args+=(--peers tantivy-cli)
fi
if ! given --peng; then
  args+=(--peng "$target/release/peng")
fi
exec "$target/release/log-ingest" "${args[@]}"
