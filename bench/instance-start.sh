#!/usr/bin/env bash
# Seconds from `peng apply` to every instance answering HTTP on its port, with instances
# sandboxed (bubblewrap, the team's user, a cgroup each) and unsandboxed (the platform file's
# `isolation.mode: off`; cgroups still apply), next to the same program started bare. Also what
# the sandbox costs each running instance in processes and memory.
#
#   bench/instance-start.sh                    # build peng (release), 5 runs of 1 and of 10 instances
#   bench/instance-start.sh --runs 10 --instances 1,20
#   bench/instance-start.sh --no-build
#
# Needs root (instances are sandboxed only when peng runs as root) and bubblewrap. Two peng
# servers run side by side on free ports on 127.0.0.1, each on its own temporary data
# directory; the modes take turns in every run so both see the same load. Everything is stopped
# and removed at the end, also on errors and Ctrl-C (--keep keeps the directory).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/instance-start.sh [options]
  --runs N           measured runs of each mode and size (default 5)
  --warmup N         runs before the measured ones, not counted (default 1)
  --instances LIST   instance counts to measure (default 1,10)
  --peng BIN         the peng binary (default: build it, then $CARGO_TARGET_DIR or target/ release/peng)
  --no-build         do not run cargo build
  --keep             keep the temporary directory and print where it is
EOF
}

runs=5
warmup=1
sizes="1,10"
peng=""
build=1
keep=0
while (($#)); do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --instances) sizes="$2"; shift 2 ;;
    --peng) peng="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] || { echo "--runs and --warmup take numbers" >&2; exit 64; }
[[ $(id -u) == 0 ]] || { echo "instance-start: needs root (instances are sandboxed only when peng runs as root)" >&2; exit 69; }
for tool in bwrap curl jq python3; do
    command -v "$tool" >/dev/null || { echo "instance-start: $tool is needed" >&2; exit 69; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z $peng ]]; then
    if ((build)); then
        (cd "$root" && cargo build --release -p peng)
    fi
    peng="${CARGO_TARGET_DIR:-$root/target}/release/peng"
fi
[[ -x $peng ]] || { echo "instance-start: no peng binary at $peng" >&2; exit 69; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/peng-instance-start.XXXXXX")"
chmod 755 "$tmp" # the team's user reads the service's directory
pids=()
cleanup() {
    local pid i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if ((keep)); then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "instance-start: $*" >&2; exit 1; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The service: a stdlib HTTP server, as small a Python program as a web service gets, by the
# system's interpreter in every mode (peng's own PATH may start with a slower shim), with a whole
# core so that the quota does not stretch its start.
mkdir -p "$tmp/svc"
cat >"$tmp/svc/app.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
chmod 755 "$tmp/svc"
chmod 644 "$tmp/svc/app.py"

# Two servers: `on` sandboxes (root, bubblewrap), `off` has `isolation.mode: off`.
# Room for 10 instances of a whole core each; otherwise the built-in platform.
for mode in on off; do
    cat >"$tmp/platform-$mode.yaml" <<EOF
apiVersion: peng/v1
kind: platform
capacity: { cpu: 64, memory: 64Gi, disk: 100Gi }
isolation: { mode: "$([[ $mode == on ]] && echo auto || echo off)" }
EOF
done
declare -A url token
start_peng() {
    local mode="$1" http gelf
    http=$(free_port)
    gelf=$(free_port)
    local args=(serve --data-dir "$tmp/data-$mode" --listen "127.0.0.1:$http" --gelf-udp "127.0.0.1:$gelf" --gelf-tcp "127.0.0.1:$gelf" --platform "$tmp/platform-$mode.yaml")
    "$peng" "${args[@]}" >"$tmp/peng-$mode.log" 2>&1 &
    pids+=($!)
    url[$mode]="http://127.0.0.1:$http"
    local i
    for ((i = 0; i < 600; i++)); do
        curl -fs "${url[$mode]}/healthz" >/dev/null && break
        sleep 0.05
    done
    curl -fs "${url[$mode]}/healthz" >/dev/null || { cat "$tmp/peng-$mode.log" >&2; die "peng ($mode) did not start"; }
    token[$mode]=$(PENG_URL="${url[$mode]}" PENG_TOKEN="$(cat "$tmp/data-$mode/admin.token")" "$peng" team create "bench-$mode" --quiet)
}
start_peng on
start_peng off
PENG_URL="${url[on]}" PENG_TOKEN="${token[on]}" "$peng" status >/dev/null
iso_on=$(grep -o 'isolation [a-z]*' "$tmp/peng-on.log" | head -1 || true)
[[ $iso_on != "isolation off" ]] || die "isolation is off where it should be on: $(grep isolation "$tmp/peng-on.log")"

# Seconds from `peng apply` to every instance answering GET / on its port.
apply_until_answering() {
    local mode="$1" n="$2" run="$3" service file t0 t1 ports port
    service="s$n-r$run"
    file="$tmp/svc/$mode-$service.yaml"
    cat >"$file" <<EOF
apiVersion: peng/v1
service: $service
team: bench-$mode
stages: { integration: { instances: $n } }
run:
  command: ["/usr/bin/python3", "app.py", "\${PORT}"]
  resources: { cpu: 1, memory: 128Mi }
EOF
    export PENG_URL="${url[$mode]}" PENG_TOKEN="${token[$mode]}"
    t0=$(now)
    "$peng" apply -f "$file" >"$tmp/apply.out" 2>&1 || { cat "$tmp/apply.out" >&2; die "apply failed ($mode)"; }
    ports=$("$peng" status "bench-$mode/$service" --json | jq -r '.stages[].instances[].port')
    for port in $ports; do
        until curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1; do sleep 0.005; done
    done
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'
}

# What one running instance costs besides its program: processes and resident memory of the
# processes in its cgroup that are not the program.
overhead() {
    local mode="$1" service="$2" pid kb=0 n=0
    export PENG_URL="${url[$mode]}" PENG_TOKEN="${token[$mode]}"
    local leader
    leader=$("$peng" status "bench-$mode/$service" --json | jq -r '.stages[0].instances[0].pid')
    for pid in $(pgrep -g "$leader"); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == bwrap ]] || continue
        n=$((n + 1))
        kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")))
    done
    echo "$n $kb"
}

bare() {
    local port t0
    port=$(free_port)
    t0=$(now)
    (cd "$tmp/svc" && exec /usr/bin/python3 app.py "$port") &
    local pid=$!
    until curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1; do sleep 0.005; done
    awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f\n", b - a}'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f\n", a[int((NR+1)/2)], a[1], a[NR]}'; }

declare -A results
IFS=, read -ra sizes_list <<<"$sizes"
total=$((warmup + runs))
for ((r = 1; r <= total; r++)); do
    for n in "${sizes_list[@]}"; do
        for mode in on off; do
            s=$(apply_until_answering "$mode" "$n" "$r")
            if ((r > warmup)); then results["$mode,$n"]+="$s"$'\n'; fi
            if ((r == total && n == ${sizes_list[0]})); then
                read -r procs kb < <(overhead "$mode" "s$n-r$r")
                results["overhead,$mode"]="$procs $kb"
            fi
            PENG_URL="${url[$mode]}" PENG_TOKEN="${token[$mode]}" "$peng" destroy "bench-$mode/s$n-r$r" >/dev/null
        done
        if ((n == 1)); then
            s=$(bare)
            if ((r > warmup)); then results["bare,1"]+="$s"$'\n'; fi
        fi
    done
done

echo
echo "peng $("$peng" --version | awk '{print $2}') at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(bwrap --version)"
echo "seconds from peng apply to every instance answering HTTP ($runs runs after $warmup warm-up)"
printf '%-44s %8s %8s %8s\n' "" median min max
read -r m lo hi < <(printf '%s' "${results[bare,1]}" | stats)
printf '%-44s %8s %8s %8s\n' "the program alone (/usr/bin/python3 app.py)" "$m" "$lo" "$hi"
for n in "${sizes_list[@]}"; do
    read -r on_m on_lo on_hi < <(printf '%s' "${results[on,$n]}" | stats)
    read -r off_m off_lo off_hi < <(printf '%s' "${results[off,$n]}" | stats)
    printf '%-44s %8s %8s %8s\n' "$n instance(s), unsandboxed (isolation off)" "$off_m" "$off_lo" "$off_hi"
    printf '%-44s %8s %8s %8s\n' "$n instance(s), sandboxed" "$on_m" "$on_lo" "$on_hi"
    printf '%-44s %8s\n' "  sandboxed / unsandboxed (medians)" "$(awk -v a="$on_m" -v b="$off_m" 'BEGIN {printf "%.2f", a / b}')"
done
read -r p kb <<<"${results[overhead,on]}"
echo "a sandboxed instance runs $p bubblewrap processes beside its program, $kb KiB resident in all"
