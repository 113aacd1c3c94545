#!/usr/bin/env bash
# The README's walk-through, run as a new user runs it: from a copy of the repository's tracked
# files in a fresh temporary directory (mode 0755, so a team's Unix user can read the example
# when peng sandboxes it), with every default, the data in the relative ./peng-data.
#
# - The first command of the README's first code block (`cargo run --release -p peng -- serve`)
#   runs in the background, its output in a log; it is stopped when the script ends, however
#   it ends.
# - Every line of the "Five minutes with the example" block runs literally, comments stripped,
#   one after the other in one bash session (so `export` carries over). A line must exit 0,
#   or N when its comment says `exit N`; a line whose comment says Ctrl-C follows, and is
#   interrupted once it has printed something.
# - Between the lines, the script checks what they promise, polling with deadlines: the
#   instances run, /books lists the books from the database, the alert fires and resolves,
#   and after `peng destroy` no process of the example and none of its mariadbd servers runs.
#
# PENG_WALKTHROUGH_VERBOSE=1 prints every line's output, and the server's log at the end.
#
# Only the addresses differ from the defaults: PENG_LISTEN, PENG_GELF_UDP, PENG_GELF_TCP and
# PENG_URL point the server and the CLI at free ports on 127.0.0.1, so the walk-through runs
# next to other servers and tests. A failing line is shown with its output and the server's log.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peng/target}"
started=$SECONDS

# Deadlines, in seconds.
build_deadline=${PENG_WALKTHROUGH_BUILD_DEADLINE:-3600} # the release build and the server's start
line_deadline=300                                        # one line of the walk-through
poll_deadline=120                                        # what a line promises

say() { printf 'walkthrough: %s\n' "$*"; }

# --- a copy of the repository, readable by other users -------------------------------------------

tmp_root=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp_root/peng-walkthrough.XXXXXX")
chmod 0755 "$work"
copy="$work/repo"
mkdir -m 0755 "$copy"

server_pid=""
session_pid=""
finished=""

processes_under() { # PIDs of processes whose cwd or command line is under $1
  local dir=$1 pid cwd
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$pid" = "$BASHPID" ] && continue
    cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
    if [[ "$cwd/" == "$dir/"* ]] || tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$dir/"; then
      echo "$pid"
    fi
  done
}

show_processes() {
  local pid
  for pid in "$@"; do
    printf '  %s (cwd %s): %s\n' "$pid" "$(readlink "/proc/$pid/cwd" 2>/dev/null)" \
      "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
  done
}

# The script's own output, for when it ends inside a check whose output goes to a file.
exec {script_stdout}>&1 {script_stderr}>&2

cleanup() {
  local status=$?
  set +e
  exec 1>&"$script_stdout" 2>&"$script_stderr"
  if [ -n "$session_pid" ] && kill -0 "$session_pid" 2>/dev/null; then
    for pid in $(ps -o pid= --ppid "$session_pid"); do kill -INT "$pid" 2>/dev/null; done
    kill "$session_pid" 2>/dev/null
    wait "$session_pid" 2>/dev/null
  fi
  cd /
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$server_pid" 2>/dev/null; then
      say "the server did not stop within 60s of SIGTERM; killing it"
      kill -KILL "$server_pid"
      status=1
    fi
    wait "$server_pid" 2>/dev/null
  fi
  # Whatever peng started must have stopped with it.
  local deadline=$((SECONDS + 30)) left
  left=$(processes_under "$copy")
  while [ -n "$left" ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
    left=$(processes_under "$copy")
  done
  if [ -n "$left" ]; then
    say "processes still running under the copy after the server stopped:"
    show_processes $left
    kill -KILL $left 2>/dev/null
    status=1
  fi
  if [ -n "${PENG_WALKTHROUGH_VERBOSE:-}" ] && [ -s "$work/serve.log" ]; then
    echo "--- the server's log ---"
    cat "$work/serve.log"
    echo "---"
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ] && [ -n "$finished" ]; then
    say "passed in $((SECONDS - started))s"
  else
    say "FAILED after $((SECONDS - started))s"
    [ "$status" -eq 0 ] && status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A sandboxed instance runs as its team's user, who must be able to reach the example.
dir=$copy
while [ "$dir" != / ]; do
  if [ "$(( 0$(stat -c %a "$dir") & 05 ))" -ne 5 ]; then
    say "$dir is not readable by other users (mode $(stat -c %a "$dir")): set TMPDIR to a directory that is, e.g. /tmp"
    exit 1
  fi
  dir=$(dirname "$dir")
done

git -C "$repo" ls-files -z | while IFS= read -r -d '' f; do
  if [ -e "$repo/$f" ] || [ -L "$repo/$f" ]; then printf '%s\0' "$f"; fi
done | tar -C "$repo" --null -T - -cf - | tar -C "$copy" -xpf -
cd "$copy"

# --- the README's commands -----------------------------------------------------------------------

# The first block's first command, and the walk-through's lines as
# "EXPECTED_STATUS<TAB>FOLLOWS<TAB>COMMAND", comments stripped.
python3 - README.md "$work/serve.cmd" "$work/lines.tsv" <<'EOF'
import re
import sys

readme, serve_out, lines_out = sys.argv[1:]
text = open(readme, encoding="utf-8").read().splitlines()


def strip_comment(line):
    """Splits a shell line into command and comment: '#' starts a comment at a word's start,
    outside quotes."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c == "\\":
            i += 2
            continue
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
            return line[:i].rstrip(), line[i + 1:].strip()
        i += 1
    if quote:
        sys.exit("walkthrough: unterminated quote in README line: " + line)
    return line.rstrip(), ""


def sh_block(start):
    """The lines of the first ```sh block at or after line `start`."""
    for i in range(start, len(text)):
        if text[i].strip() == "```sh":
            body = []
            for line in text[i + 1:]:
                if line.strip() == "```":
                    return body
                body.append(line)
            sys.exit("walkthrough: README: a ```sh block is not closed")
    sys.exit("walkthrough: README: no ```sh block found")


def commands(block):
    """(command, comment) pairs, continuation lines joined, blank and comment-only lines
    dropped."""
    out, pending, comments = [], "", []
    for raw in block:
        cmd, comment = strip_comment(raw)
        if comment:
            comments.append(comment)
        if cmd.endswith("\\"):
            pending += cmd[:-1] + " "
            continue
        cmd = (pending + cmd).strip()
        pending = ""
        if cmd:
            out.append((cmd, " ".join(comments)))
            comments = []
        elif out and comments:  # a comment continued on its own line
            out[-1] = (out[-1][0], out[-1][1] + " " + " ".join(comments))
            comments = []
    return out


first = commands(sh_block(0))
if not first:
    sys.exit("walkthrough: README: the first code block has no command")
with open(serve_out, "w") as f:
    f.write(first[0][0] + "\n")

try:
    start = text.index("## Five minutes with the example")
except ValueError:
    sys.exit("walkthrough: README: no section '## Five minutes with the example'")
with open(lines_out, "w") as f:
    for cmd, comment in commands(sh_block(start)):
        if "\t" in cmd:
            sys.exit("walkthrough: README: a tab in a command: " + cmd)
        m = re.search(r"\bexit (\d+)\b", comment)
        expected = m.group(1) if m else "0"
        follows = "1" if "Ctrl-C" in comment else "0"
        f.write("%s\t%s\t%s\n" % (expected, follows, cmd))
EOF
serve_cmd=$(cat "$work/serve.cmd")

# --- addresses -----------------------------------------------------------------------------------

# A free TCP port for the API, and one free on both TCP and UDP for GELF.
read -r http_port gelf_port < <(python3 - <<'EOF'
import socket

def free(udp_too):
    while True:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        if udp_too:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                t.close()
                continue
            u.close()
        t.close()
        return port

a = free(False)
b = free(True)
while b == a:
    b = free(True)
print(a, b)
EOF
)
export PENG_LISTEN="127.0.0.1:$http_port"
export PENG_GELF_UDP="127.0.0.1:$gelf_port"
export PENG_GELF_TCP="127.0.0.1:$gelf_port"
export PENG_URL="http://127.0.0.1:$http_port"
unset PENG_TOKEN PENG_DATA_DIR PENG_PLATFORM

# --- the server ----------------------------------------------------------------------------------

server_log="$work/serve.log"
say "in $copy: \$ $serve_cmd   (PENG_LISTEN=$PENG_LISTEN, GELF on $gelf_port)"
# `cargo run` replaces itself with peng once built, so this pid is the server's.
bash -c "exec $serve_cmd" >"$server_log" 2>&1 </dev/null &
server_pid=$!

# Everything said about a failure goes to stderr: a check may have redirected stdout.
fail() {
  {
    say "FAILED: $*"
    if [ -s "$server_log" ]; then
      echo "--- the server's log (last 80 lines) ---"
      tail -n 80 "$server_log"
      echo "---"
    fi
  } >&2
  exit 1
}

build_started=$SECONDS
deadline=$((SECONDS + build_deadline))
until curl -fsS --max-time 2 -o /dev/null "$PENG_URL/healthz" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || fail "'$serve_cmd' ended before serving"
  [ "$SECONDS" -lt "$deadline" ] || fail "'$serve_cmd' did not serve $PENG_URL within ${build_deadline}s"
  sleep 0.5
done
[ -s peng-data/admin.token ] || fail "the server serves but ./peng-data/admin.token is missing"
say "server up after $((SECONDS - build_started))s (release build included)"

# --- one bash session for the walk-through -------------------------------------------------------

coproc SESSION { exec bash --noprofile --norc 2>"$work/session.err"; }
session_pid=$SESSION_PID
session_in=${SESSION[1]}
session_out=${SESSION[0]}
step=0
out=""

# Runs $1 in the session, its output in a new file ($out); sets $rc. $2: follow (interrupt it
# with SIGINT once it has printed something).
run_line() {
  local cmd=$1 follows=${2:-0} reply deadline
  step=$((step + 1))
  out="$work/out.$step"
  : >"$out"
  printf '{ %s\n} >%q 2>&1 </dev/null; printf "rc=%%s\\n" "$?"\n' "$cmd" "$out" >&"$session_in"
  if [ "$follows" = 1 ]; then
    deadline=$((SECONDS + poll_deadline))
    until [ -s "$out" ]; do
      [ "$SECONDS" -lt "$deadline" ] || break
      sleep 0.2
    done
    for pid in $(ps -o pid= --ppid "$session_pid"); do kill -INT "$pid" 2>/dev/null || true; done
  fi
  if ! IFS= read -r -t "$line_deadline" reply <&"$session_out"; then
    if kill -0 "$session_pid" 2>/dev/null; then
      show_output "$cmd"
      fail "'$cmd' did not finish within ${line_deadline}s"
    fi
    show_output "$cmd"
    { echo "--- the session's errors ---"; cat "$work/session.err"; } >&2
    fail "the shell ended while running '$cmd'"
  fi
  rc=${reply#rc=}
}

# Output of a helper command run in the session (not a README line), on stdout; fails the test
# when it fails. Never in a subshell: the session's descriptors exist only in this shell.
session_capture() {
  run_line "$1"
  if [ "$rc" != 0 ]; then
    show_output "$1"
    fail "'$1' exited $rc"
  fi
  cat "$out"
}

show_output() {
  {
    echo "--- \$ $1 ---"
    cat "$out"
    echo "---"
  } >&2
}

# Polls `$2 ARGS...` until it succeeds, for at most $poll_deadline seconds; $1 says what is awaited.
await() {
  local what=$1 deadline=$((SECONDS + poll_deadline))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within ${poll_deadline}s (last answer above)"
    sleep 0.5
  done
}

status_json() { session_capture 'peng status books/bookshelf --json' >"$work/status.json"; }

# True when the service's instances all run: 1 in integration, 2 in production.
instances_run() {
  status_json
  python3 - "$work/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
states = {st["name"]: [i["state"] for i in st["instances"]] for st in s["stages"]}
want = {"integration": 1, "production": 2}
ok = all(states.get(k, []).count("running") == n for k, n in want.items())
if not ok:
    print("instances:", states, file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

# True when the alert $1 is in state $2 on some stage ($2 = "firing"), or nowhere firing ($2 = "not-firing").
alert_is() {
  status_json
  python3 - "$work/status.json" "$1" "$2" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
name, want = sys.argv[2], sys.argv[3]
states = [a["state"] for a in s["alerts"] if a["alert"] == name]
firing = "firing" in states
ok = firing if want == "firing" else (not firing and "pending" not in states)
if not ok:
    print("alert %s: %s" % (name, states), file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

# True when a log search for $1 finds at least $2 messages of books/bookshelf.
logs_have() {
  session_capture "peng logs search $(printf %q "$1") --since 15m --json" >"$work/search.json"
  python3 - "$work/search.json" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
hits = [h for h in r["hits"] if h["team"] == "books" and h["service"] == "bookshelf"]
if len(hits) < int(sys.argv[2]):
    print("%d messages found" % len(hits), file=sys.stderr)
    sys.exit(1)
EOF
}

# PIDs of processes of the example: cwd or command line in examples/bookshelf of the copy, or
# the environment of an instance of books/bookshelf of this server (wherever it was reparented).
example_processes() {
  processes_under "$copy/examples/bookshelf"
  local p env
  for p in /proc/[0-9]*; do
    env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
    if grep -qx 'PENG_SERVICE=books/bookshelf' <<<"$env" \
      && grep -q "^PENG_GELF_HTTP=.*:$http_port/" <<<"$env"; then
      echo "${p#/proc/}"
    fi
  done
}

# PIDs of the mariadbd servers of the example's databases.
example_databases() {
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "mariadbd.*$copy/peng-data/databases/books/bookshelf/"; then
      echo "${p#/proc/}"
    fi
  done
}

# While the example runs, the destroy check must see it: its 3 instances and its 2 mariadbd.
example_is_seen() {
  local procs dbs
  procs=$(example_processes | sort -u | wc -l)
  dbs=$(example_databases | wc -l)
  if [ "$procs" -lt 3 ] || [ "$dbs" -ne 2 ]; then
    echo "seen: $procs processes of the example, $dbs mariadbd of it" >&2
    return 1
  fi
}

nothing_of_the_example_runs() {
  local left
  left=$({ example_processes; example_databases; } | sort -u)
  if [ -n "$left" ]; then
    echo "still running:" >&2
    show_processes $left >&2
    return 1
  fi
}

# --- the walk-through ----------------------------------------------------------------------------

# What each line promises, checked after it; every one must still be found in the README.
applies=0
checked_instances="" checked_curl="" checked_search="" checked_tail="" checked_fire=""
checked_resolve="" checked_destroy="" checked_path="" checked_token="" checked_unchanged=""

while IFS=$'\t' read -r expected follows cmd <&3; do
  t0=$SECONDS
  run_line "$cmd" "$follows"
  if [ "$follows" = 1 ]; then
    [ "$rc" = 130 ] || [ "$rc" = 0 ] || { show_output "$cmd"; fail "'$cmd' exited $rc after Ctrl-C"; }
    [ -s "$out" ] || { show_output "$cmd"; fail "'$cmd' printed nothing within ${poll_deadline}s"; }
  elif [ "$rc" != "$expected" ]; then
    show_output "$cmd"
    fail "'$cmd' exited $rc, the README says $expected"
  fi
  printf '  %4ss  $ %s\n' "$((SECONDS - t0))" "$cmd"
  line_out=$out
  if [ -n "${PENG_WALKTHROUGH_VERBOSE:-}" ]; then sed 's/^/        /' "$out"; fi

  case "$cmd" in
  *"export PATH="*)
    run_line 'command -v peng'
    peng_path=$(cat "$out")
    [ "$rc" = 0 ] || fail "after '$cmd', peng is not on PATH"
    [ "$(readlink -f "$peng_path")" = "$(readlink -f "$CARGO_TARGET_DIR/release/peng")" ] \
      || fail "after '$cmd', peng is $peng_path, not the one just built in $CARGO_TARGET_DIR/release"
    checked_path=1
    ;;
  "export PENG_TOKEN="*)
    session_capture 'printf "%s" "$PENG_TOKEN"' >"$work/token"
    token=$(cat "$work/token")
    [[ "$token" =~ ^[^[:space:]]+$ ]] || fail "after '$cmd', PENG_TOKEN is '$token'"
    # It is a team's token the API takes.
    run_line 'curl -sS -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $PENG_TOKEN" "$PENG_URL/api/v1/services"'
    [ "$(cat "$out")" = 200 ] || fail "after '$cmd', the API answers $(cat "$out") to PENG_TOKEN ('$token')"
    checked_token=1
    ;;
  "peng apply -f examples/bookshelf/peng.yaml"*)
    applies=$((applies + 1))
    if [ "$applies" = 1 ]; then
      await "the example's 3 instances running" instances_run
      await "the example's instances and databases seen by this script" example_is_seen
      isolation=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["isolation"])' "$work/status.json")
      say "isolation: $isolation"
      # As root, with bubblewrap, instances must run sandboxed as the team's user.
      if [ "$(id -u)" = 0 ] && [[ "$isolation" != on* ]]; then
        fail "peng runs as root but its instances are not sandboxed: $isolation"
      fi
      checked_instances=1
    else
      grep -q "No changes" "$line_out" || { out=$line_out; show_output "$cmd"; fail "'$cmd' applied again"; }
      checked_unchanged=1
    fi
    ;;
  "curl "*"/books")
    grep -qx Dune "$line_out" || { out=$line_out; show_output "$cmd"; fail "'$cmd' did not list Dune"; }
    # Every instance connected to its stage's database when it started.
    await "the instances' 'books in database' lines" logs_have '"books in database"' 3
    checked_curl=1
    ;;
  "peng logs search 'listed AND books:4'"*)
    await "the GELF message of the request to /books" logs_have 'listed AND books:4' 1
    checked_search=1
    ;;
  "peng logs tail"*)
    checked_tail=1
    ;;
  "touch examples/bookshelf/UNHEALTHY")
    await "the alert bookshelf-unhealthy firing" alert_is bookshelf-unhealthy firing
    checked_fire=1
    ;;
  "peng status books/bookshelf")
    # While the alert fires, the README's status line shows it.
    if [ -n "$checked_fire" ] && [ -z "$checked_resolve" ] \
      && ! grep -q "^bookshelf-unhealthy .* firing " "$line_out"; then
      out=$line_out
      show_output "$cmd"
      fail "'$cmd' does not show the firing alert bookshelf-unhealthy"
    fi
    ;;
  "rm examples/bookshelf/UNHEALTHY")
    await "the alert bookshelf-unhealthy resolved" alert_is bookshelf-unhealthy not-firing
    checked_resolve=1
    ;;
  "peng destroy books/bookshelf"*)
    await "no process of the example and none of its databases running" nothing_of_the_example_runs
    checked_destroy=1
    ;;
  esac
done 3<"$work/lines.tsv"

for c in path token instances unchanged curl search tail fire resolve destroy; do
  var="checked_$c"
  [ -n "${!var}" ] || fail "the walk-through has no line for the '$c' check any more: update scripts/walkthrough.sh with the README"
done
finished=1
