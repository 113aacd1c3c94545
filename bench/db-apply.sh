#!/usr/bin/env bash
# Seconds from `peng apply` to the database accepting the application user's connection, for a
# dedicated and for a shared MariaDB database, next to what mariadb-install-db and mariadbd
# alone take to initialise and start a server on this machine.
#
#   bench/db-apply.sh                      # build peng (release), 5 runs of each
#   bench/db-apply.sh --runs 10 --raw /tmp/db-apply.tsv
#   bench/db-apply.sh --no-build --modes tools,dedicated
#
# Everything binds 127.0.0.1 on free ports and lives in one temporary directory, removed at the
# end (also on errors and Ctrl-C) unless --keep is given. bench/README.md explains the figures.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/db-apply.sh [options]
  --runs N         measured runs of each mode (default 5)
  --warmup N       runs of each mode before the measured ones, not counted (default 1)
  --modes LIST     any of tools,dedicated,shared (default all three)
  --peng BIN       the peng binary (default: build it, then $CARGO_TARGET_DIR or target/ release/peng)
  --no-build       do not run cargo build
  --raw FILE       also write every run's figures as tab-separated values
  --keep           keep the temporary directory (logs, data) and print where it is
EOF
}

runs=5
warmup=1
modes="tools,dedicated,shared"
peng=""
build=1
raw=""
keep=0
while (($#)); do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    --peng) peng="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --raw) raw="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] || { echo "--runs and --warmup take numbers" >&2; exit 64; }
want() { [[ ,$modes, == *,$1,* ]]; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z $peng ]]; then
    if ((build)); then
        (cd "$root" && cargo build --release -p peng)
    fi
    peng="${CARGO_TARGET_DIR:-$root/target}/release/peng"
fi

for tool in mariadb-install-db mariadbd mariadb mariadb-admin openssl jq curl python3; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
        { echo "db-apply: $tool is needed" >&2; exit 69; }
done
mariadbd_bin="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
[[ -x $peng ]] || { echo "db-apply: no peng binary at $peng" >&2; exit 69; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/peng-db-apply.XXXXXX")"
peng_pid=""
shared_pid=""
tools_pid=""

# Stops what this script started, newest first, each by its pid: SIGTERM (a clean shutdown for
# mariadbd and peng; peng's own database servers stop with it), SIGKILL after 60 s.
stop_pid() {
    local pid="$1" i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$tools_pid"
    stop_pid "$peng_pid"
    stop_pid "$shared_pid"
    if ((keep)); then
        echo "db-apply: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { echo "$EPOCHREALTIME"; }
# seconds between two $EPOCHREALTIME readings
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
die() {
    echo "db-apply: $*" >&2
    exit 1
}

# Waits until `mariadb` answers SELECT 1 on a socket, polling every 50 ms as peng does.
wait_socket() {
    local sock="$1" pid="$2" deadline=$((SECONDS + 120))
    until mariadb --no-defaults -S "$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# mariadb-install-db with the options peng runs it with.
install_db() {
    local dir="$1"
    mkdir -p "$dir/tmp"
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --auth-root-authentication-method=socket --skip-test-db --tmpdir="$dir/tmp" \
        >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; return 1; }
}

# Figures of every run, by name: "name" -> " v1 v2 ...".
declare -A figures=()
names=()
record() {
    local name="$1" value="$2" run="$3"
    [[ -v "figures[$name]" ]] || names+=("$name")
    figures[$name]+=" $value"
    [[ -z $raw ]] || printf '%s\t%s\t%s\n' "$run" "$name" "$value" >>"$raw"
}
[[ -z $raw ]] || printf 'run\tfigure\tseconds\n' >"$raw"

# --- the tools alone ---------------------------------------------------------------------------

tools_run() {
    local run="$1" dir="$tmp/tools/$1" t0 t1 t2
    mkdir -p "$dir"
    t0=$(now)
    install_db "$dir" || die "mariadb-install-db failed"
    t1=$(now)
    "$mariadbd_bin" --no-defaults --datadir="$dir/data" --socket="$dir/mariadbd.sock" \
        --pid-file="$dir/mariadbd.pid" --log-error="$dir/mariadbd.err" --tmpdir="$dir/tmp" \
        --skip-networking --user="$(id -un)" >"$dir/mariadbd.out" 2>&1 &
    tools_pid=$!
    wait_socket "$dir/mariadbd.sock" "$tools_pid" || { tail -20 "$dir/mariadbd.err" >&2; die "mariadbd did not start"; }
    t2=$(now)
    stop_pid "$tools_pid"
    tools_pid=""
    rm -rf "$dir"
    if [[ $run != w* ]]; then
        record "tools: mariadb-install-db" "$(since "$t0" "$t1")" "$run"
        record "tools: mariadbd until SELECT 1 on its socket" "$(since "$t1" "$t2")" "$run"
        record "tools: total" "$(since "$t0" "$t2")" "$run"
    fi
    echo "run $run tools: install-db $(since "$t0" "$t1") s, start $(since "$t1" "$t2") s" >&2
}

# --- a MariaDB server standing in for a registered shared one ----------------------------------

start_shared() {
    local dir="$tmp/shared" port password
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=db-apply bench CA" \
            -keyout ca-key.pem -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout server-key.pem -out server.csr
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl failed"; }
    install_db "$dir" || die "mariadb-install-db failed for the shared server"
    port=$(free_port)
    "$mariadbd_bin" --no-defaults --datadir="$dir/data" --socket="$dir/mariadbd.sock" \
        --pid-file="$dir/mariadbd.pid" --log-error="$dir/mariadbd.err" --tmpdir="$dir/tmp" \
        --user="$(id -un)" --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
        --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server-key.pem" \
        --require-secure-transport=ON >"$dir/mariadbd.out" 2>&1 &
    shared_pid=$!
    wait_socket "$dir/mariadbd.sock" "$shared_pid" || { tail -20 "$dir/mariadbd.err" >&2; die "the shared server did not start"; }
    # upper, lower, digit and one of -_.~, 34 characters
    password="Bench-$(openssl rand -hex 12)-Q7z"
    (umask 077 && printf '%s\n' "$password" >"$dir/admin.password")
    mariadb --no-defaults -S "$dir/mariadbd.sock" -uroot -e "
        CREATE USER 'platform_admin'@'127.0.0.1' IDENTIFIED BY '$password' REQUIRE SSL;
        GRANT ALL PRIVILEGES ON *.* TO 'platform_admin'@'127.0.0.1' WITH GRANT OPTION;" ||
        die "cannot create the shared server's admin account"
    cat >"$tmp/platform.yaml" <<EOF
apiVersion: peng/v1
kind: platform
databases:
  shared_servers:
    bench:
      host: 127.0.0.1
      port: $port
      admin_user: platform_admin
      admin_password_file: shared/admin.password
      ca: shared/ca.pem
      version: "10.11"
      app_hosts: ["127.0.0.1"]
EOF
}

# --- peng --------------------------------------------------------------------------------------

start_peng() {
    local port gelf token i args=()
    port=$(free_port)
    gelf=$(free_port)
    args=(serve --data-dir "$tmp/peng-data" --listen "127.0.0.1:$port"
        --gelf-udp "127.0.0.1:$gelf" --gelf-tcp "127.0.0.1:$gelf")
    [[ ! -f $tmp/platform.yaml ]] || args+=(--platform "$tmp/platform.yaml")
    NO_COLOR=1 RUST_LOG="info,tantivy=warn" "$peng" "${args[@]}" >"$tmp/peng.log" 2>&1 &
    peng_pid=$!
    for ((i = 0; i < 600; i++)); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        kill -0 "$peng_pid" 2>/dev/null || { tail -20 "$tmp/peng.log" >&2; die "peng serve exited"; }
        sleep 0.1
    done
    export PENG_URL="http://127.0.0.1:$port"
    PENG_TOKEN="$(cat "$tmp/peng-data/admin.token")"
    export PENG_TOKEN
    token=$("$peng" team create books --json | jq -er .token) || die "cannot create the team"
    PENG_TOKEN="$token"
}

# peng's log line `message` for node a of `service`: its time (seconds since the epoch, the
# clock $EPOCHREALTIME reads) and its took_ms in seconds, as "TIME TOOK".
log_line() {
    local service="$1" message="$2" line
    line=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/peng.log" | grep -F "$message" |
        grep -F "server=books/$service integration node a " | tail -1) || return 1
    printf '%s %s\n' "$(date -d "${line%% *}" +%s.%N)" \
        "$(sed -n 's/.*took_ms=\([0-9]*\).*/\1/p' <<<"$line" | awk '{ printf "%.3f", $1 / 1000 }')"
}

# The dedicated apply in parts, from the two log lines peng writes while it makes the server:
# `data directory initialised` (after mariadb-install-db) and `database server up` (mariadbd
# answers on its socket), each with how long that step took.
dedicated_split() {
    local service="$1" run="$2" t0="$3" t1="$4" init up init_at init_took up_at up_took
    if ! init=$(log_line "$service" "data directory initialised") ||
        ! up=$(log_line "$service" "database server up"); then
        echo "run $run: no split of the dedicated apply (log lines not found)" >&2
        return 0
    fi
    read -r init_at init_took <<<"$init"
    read -r up_at up_took <<<"$up"
    record "dedicated: in apply, before mariadb-install-db" "$(since "$t0" "$(since "$init_took" "$init_at")")" "$run"
    record "dedicated: in apply, mariadb-install-db" "$init_took" "$run"
    record "dedicated: in apply, TLS files, my.cnf, spawn" "$(since "$init_at" "$(since "$up_took" "$up_at")")" "$run"
    record "dedicated: in apply, mariadbd until it answers" "$up_took" "$run"
    record "dedicated: in apply, baseline, schema, accounts, reply" "$(since "$up_at" "$t1")" "$run"
}

peng_run() {
    local mode="$1" run="$2" service file t0 t1 tk tc t2 total creds host port db user password ca ca_pem attempts=0
    service="bench-${mode:0:1}$run"
    file="$tmp/$service.yaml"
    {
        echo "apiVersion: peng/v1"
        echo "service: $service"
        echo "team: books"
        echo "stages:"
        echo "  integration: { instances: 0 }"
        echo "run:"
        echo '  command: ["sleep", "3600"]'
        if [[ $mode == shared ]]; then
            echo 'database: { engine: mariadb, version: "10.11", mode: shared }'
        else
            echo 'database: { engine: mariadb, version: "10.11" }'
        fi
    } >"$file"

    t0=$(now)
    "$peng" apply -f "$file" >"$tmp/$service.apply" 2>&1 ||
        { cat "$tmp/$service.apply" >&2; die "peng apply failed ($mode)"; }
    t1=$(now)
    creds=$("$peng" db credentials "books/$service" --stage integration --json) ||
        die "peng db credentials failed ($mode)"
    tk=$(now)
    # one jq for all fields; the clock starts again after it (jq is no part of connecting)
    {
        read -r host
        read -r port
        read -r db
        read -r user
        read -r password
        read -r ca
        read -r ca_pem
    } < <(jq -r '.host, .port, .database, .user, .password, (.env.DB_SSL_CA // ""), (.ca_pem | @json)' <<<"$creds")
    # the instances' path is inside their sandbox when peng runs as root: use the PEM itself
    if [[ -z $ca || ! -r $ca ]]; then
        ca="$tmp/$service-ca.pem"
        jq -r . <<<"$ca_pem" >"$ca"
    fi
    tc=$(now)
    until mariadb --no-defaults -h"$host" -P"$port" -u"$user" -p"$password" --ssl-ca="$ca" \
        --ssl-verify-server-cert -D "$db" -e 'SELECT 1' >"$tmp/$service.connect" 2>&1; do
        ((++attempts < 600)) || { cat "$tmp/$service.connect" >&2; die "the application user cannot connect ($mode)"; }
        sleep 0.05
    done
    t2=$(now)
    total=$(awk -v a="$(since "$t0" "$tk")" -v b="$(since "$tc" "$t2")" 'BEGIN { printf "%.3f", a + b }')
    ((attempts == 0)) || echo "run $run $mode: the first $attempts connection attempts failed" >&2

    if [[ $run != w* ]]; then
        record "$mode: apply to first connection" "$total" "$run"
        record "$mode: peng apply" "$(since "$t0" "$t1")" "$run"
        if [[ $mode == dedicated ]]; then
            dedicated_split "$service" "$run" "$t0" "$t1"
        fi
        record "$mode: after apply, peng db credentials" "$(since "$t1" "$tk")" "$run"
        record "$mode: after apply, mariadb connects" "$(since "$tc" "$t2")" "$run"
    fi
    echo "run $run $mode: apply $(since "$t0" "$t1") s, to first connection $total s" >&2
    sed 's/^/    /' "$tmp/$service.apply" | grep -F "database" >&2 || true

    "$peng" destroy "books/$service" >"$tmp/$service.destroy" 2>&1 ||
        { cat "$tmp/$service.destroy" >&2; die "peng destroy failed ($mode)"; }
}

# --- the runs ------------------------------------------------------------------------------------

echo "db-apply: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load$(uptime | sed 's/.*load average//')" >&2
echo "db-apply: $("$mariadbd_bin" --version)" >&2
echo "db-apply: $("$peng" --version), in $tmp" >&2
if want shared; then start_shared; fi
if want dedicated || want shared; then start_peng; fi

run_all() {
    local run="$1"
    if want tools; then tools_run "$run"; fi
    if want dedicated; then peng_run dedicated "$run"; fi
    if want shared; then peng_run shared "$run"; fi
}
for ((i = 1; i <= warmup; i++)); do run_all "w$i"; done
for ((i = 1; i <= runs; i++)); do run_all "$i"; done

load_after="$(uptime | sed 's/.*load average: //')"
printf '\n| %s (%d runs) | median | min | max |\n|---|---|---|---|\n' "seconds" "$runs"
for name in "${names[@]}"; do
    # shellcheck disable=SC2086 # one value per word
    printf '%s\n' ${figures[$name]} | sort -g | awk -v name="$name" '
        { v[NR] = $1 }
        END {
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "| %s | %.3f | %.3f | %.3f |\n", name, m, v[1], v[NR]
        }'
done
echo
echo "load average at the end: $load_after"
