#!/usr/bin/env python3
"""bookshelf: a tiny service to walk through peng with.

It serves a book list on /books and a health check on /health, writes a log line per request
to stdout, and sends one GELF message per request to peng when PENG_GELF_HTTP and
PENG_INGEST_TOKEN are set (peng sets both for its instances). Only the standard library.

Make it unhealthy to see an alert fire: POST /admin/health?ok=false (back: ok=true), or create a
file named UNHEALTHY next to this script.
"""

import argparse
import json
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOOKS = ["Dune", "Der Zauberberg", "Die Blechtrommel", "Momo"]
HERE = Path(__file__).resolve().parent
state = {"healthy": True}


def send_gelf(short_message, **fields):
    url = os.environ.get("PENG_GELF_HTTP")
    token = os.environ.get("PENG_INGEST_TOKEN")
    if not url or not token:
        return
    message = {
        "version": "1.1",
        "host": "bookshelf-%s" % os.environ.get("PENG_INSTANCE", "0"),
        "short_message": short_message,
        "level": 6,
        "_ingest_token": token,
        "_service": os.environ.get("PENG_SERVICE", "").split("/")[-1],
        "_stage": os.environ.get("PENG_STAGE", ""),
        "_instance": os.environ.get("PENG_INSTANCE", ""),
    }
    message.update({"_" + k: v for k, v in fields.items()})
    req = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=2).read()
    except OSError as err:  # logging must never take the service down
        print("gelf send failed: %s" % err, file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            healthy = state["healthy"] and not (HERE / "UNHEALTHY").exists()
            self._reply(200 if healthy else 503, "ok\n" if healthy else "unhealthy\n")
        elif self.path == "/books":
            self._reply(200, "\n".join(BOOKS) + "\n")
            send_gelf("listed books", books=len(BOOKS), path=self.path)
        else:
            self._reply(404, "not found\n")

    def do_POST(self):
        if self.path.startswith("/admin/health"):
            state["healthy"] = "ok=false" not in self.path
            print("health switched to %s" % state["healthy"], flush=True)
            self._reply(200, "healthy=%s\n" % state["healthy"])
        else:
            self._reply(404, "not found\n")

    def log_message(self, fmt, *args):
        if self.path != "/health":
            print("bookshelf %s %s" % (self.command, fmt % args), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("bookshelf listening on 127.0.0.1:%d" % args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
