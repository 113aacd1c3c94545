#!/usr/bin/env python3
"""A hostile tenant: a service that goes looking for what is not its own.

GET /probe tries to read peng's secrets and another team's backups, sockets and processes, and
to write where it should not; it answers with what each attempt got (`denied: ...` or
`ALLOWED: ...`). GET /fork forks until the kernel says no. POST /burn busies two processes
for a while. POST /oom allocates until it is killed. GET /db asks its own database. At start it
sends one GELF message over UDP. Only the standard library and Debian's PyMySQL.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process

DATA = os.environ["DATA_DIR"]
TARGETS = json.loads(os.environ["TARGETS"])


def attempt(fn):
    try:
        result = fn()
        return "ALLOWED: %s" % (result,)[:200]
    except Exception as e:  # every refusal is an answer
        return "denied: %s" % e


def read(path):
    with open(path, "rb") as f:
        return len(f.read())


def write(path):
    with open(path, "w") as f:
        f.write("owned")
    return path


def connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    return "connected"


def probe():
    out = {}
    for name in ["admin.token", "secret.key", "db.key", "state.db"]:
        out["read " + name] = attempt(lambda n=name: read(os.path.join(DATA, n)))
    out["list data dir"] = attempt(lambda: os.listdir(DATA))
    out["list other team's backups"] = attempt(lambda: os.listdir(TARGETS["backups_dir"]))
    out["read other team's backup"] = attempt(lambda: read(TARGETS["backup_file"]))
    out["connect other team's database socket"] = attempt(lambda: connect_unix(TARGETS["socket"]))
    out["read peng's environ"] = attempt(lambda: read("/proc/%d/environ" % TARGETS["peng_pid"]))
    out["signal peng"] = attempt(lambda: os.kill(TARGETS["peng_pid"], signal.SIGTERM))
    out["signal other team's instance"] = attempt(lambda: os.kill(TARGETS["victim_pid"], signal.SIGKILL))
    out["visible processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    out["write service dir"] = attempt(lambda: write(os.path.join(os.getcwd(), "owned.txt")))
    out["write /usr"] = attempt(lambda: write("/usr/owned.txt"))
    out["write /etc"] = attempt(lambda: write("/etc/owned.txt"))
    out["read host /tmp marker"] = attempt(lambda: read(TARGETS["host_tmp_marker"]))
    # what it may do, to prove the checks above can succeed
    out["write writable dir"] = attempt(lambda: write(os.path.join(os.getcwd(), "var", "ok.txt")))
    out["write private /tmp"] = attempt(lambda: write("/tmp/ok.txt"))
    out["read database CA"] = attempt(lambda: read(os.environ["DB_SSL_CA"]))
    out["uid"] = os.getuid()
    return out


def fork_bomb():
    children, error = [], ""
    try:
        while len(children) < 10000:
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        error = str(e)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        pass


def burn(seconds):
    for _ in range(2):
        Process(target=spin, args=(seconds,), daemon=True).start()


def hog():
    print("hostile: allocating without end", flush=True)
    blocks = []
    while True:
        blocks.append(bytearray(8 << 20))


def db():
    import pymysql

    conn = pymysql.connect(
        host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"], ssl={"ca": os.environ["DB_SSL_CA"]}, connect_timeout=5)
    with conn.cursor() as cur:
        cur.execute("SELECT CONCAT('db says ', 6 * 7)")
        return cur.fetchone()[0]


def gelf(message):
    host, port = os.environ["PENG_GELF_UDP"].rsplit(":", 1)
    payload = json.dumps({
        "version": "1.1", "host": "hostile", "short_message": message,
        "_ingest_token": os.environ["PENG_INGEST_TOKEN"], "_service": "hostile",
    }).encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(payload, (host, int(port)))


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/probe":
            self.reply(200, probe())
        elif self.path == "/fork":
            self.reply(200, fork_bomb())
        elif self.path == "/db":
            self.reply(200, {"answer": attempt(db)})
        else:
            self.reply(200, {"ok": True})

    def do_POST(self):
        if self.path.startswith("/burn"):
            burn(float(self.path.split("=", 1)[1]) if "=" in self.path else 12)
            self.reply(202, {"burning": True})
        elif self.path == "/oom":
            self.reply(202, {"allocating": True})
            threading.Thread(target=hog, daemon=True).start()
        else:
            self.reply(404, {})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    gelf("hostile says hello from uid %d" % os.getuid())
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("hostile listening", flush=True)
    server.serve_forever()
