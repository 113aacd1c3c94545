#!/usr/bin/env bash
# Builds peng and the GELF ingest benchmark in release and runs the benchmark.
# Arguments are passed on to gelf-ingest, e.g.:
#   bench/gelf-ingest.sh --transports tcp --messages 500000
#   bench/gelf-ingest.sh --udp-compress zlib --rate 50000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -p peng -p peng-bench
target="${CARGO_TARGET_DIR:-$root/target}"
exec "$target/release/gelf-ingest" --peng "$target/release/peng" "$@"
