#!/usr/bin/env python3
"""bookshelf: a tiny service to walk through peng with.

It serves a book list on /books and a health check on /health, writes a log line per request
to stdout, and sends one GELF message per request to peng when PENG_GELF_HTTP and
PENG_INGEST_TOKEN are set (peng sets both for its instances).

With a database (peng sets DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD and DB_SSL_CA when
the service file has a `database:` section), the books live in a `books` table: created and
seeded on first start, listed by GET /books, added to by POST /books?title=..., over TLS
verified against peng's CA. That needs PyMySQL: Debian's `python3-pymysql` when peng sandboxes
its instances (they see only the system's /usr), else `pip install pymysql` will do. Without a
database the list is kept in memory, and only the standard library is used.

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


class Shelf:
    """The book list: a MariaDB table when the instance has a database, else a Python list."""

    def __init__(self):
        self.db = None
        if os.environ.get("DB_HOST"):
            import pymysql  # only needed with a database

            self.pymysql = pymysql
            self._connect()
            with self.db.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS books ("
                            " id INT AUTO_INCREMENT PRIMARY KEY,"
                            " title VARCHAR(200) NOT NULL UNIQUE) ENGINE=InnoDB")
                cur.execute("SELECT COUNT(*) FROM books")
                if cur.fetchone()[0] == 0:
                    cur.executemany("INSERT IGNORE INTO books (title) VALUES (%s)",
                                    [(b,) for b in BOOKS])
            print("bookshelf: books in database %s on %s:%s as %s" % (
                os.environ["DB_NAME"], os.environ["DB_HOST"], os.environ["DB_PORT"],
                os.environ["DB_USER"]), flush=True)
        else:
            self.books = list(BOOKS)

    def _connect(self):
        ssl = {"ca": os.environ["DB_SSL_CA"]} if os.environ.get("DB_SSL_CA") else {"ca": None}
        self.db = self.pymysql.connect(
            host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]),
            user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"],
            database=os.environ["DB_NAME"], ssl=ssl, autocommit=True, connect_timeout=5)

    def _query(self, sql, args=None):
        for attempt in (1, 2):
            try:
                self.db.ping(reconnect=False)
            except Exception:  # the server restarted or the connection timed out
                self._connect()
            try:
                with self.db.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall()
            except self.pymysql.err.OperationalError:
                if attempt == 2:
                    raise
                self._connect()
        return ()

    def titles(self):
        if self.db is None:
            return list(self.books)
        return [row[0] for row in self._query("SELECT title FROM books ORDER BY id")]

    def add(self, title):
        if self.db is None:
            self.books.append(title)
        else:
            self._query("INSERT IGNORE INTO books (title) VALUES (%s)", (title,))


shelf = None


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
            titles = shelf.titles()
            self._reply(200, "\n".join(titles) + "\n")
            send_gelf("listed books", books=len(titles), path=self.path)
        else:
            self._reply(404, "not found\n")

    def do_POST(self):
        if self.path.startswith("/admin/health"):
            state["healthy"] = "ok=false" not in self.path
            print("health switched to %s" % state["healthy"], flush=True)
            self._reply(200, "healthy=%s\n" % state["healthy"])
        elif self.path.startswith("/books?title="):
            from urllib.parse import parse_qs, urlparse
            title = parse_qs(urlparse(self.path).query).get("title", [""])[0].strip()
            if not title:
                self._reply(400, "title is empty\n")
                return
            shelf.add(title)
            self._reply(201, "added %s\n" % title)
            send_gelf("added a book", title=title)
        else:
            self._reply(404, "not found\n")

    def log_message(self, fmt, *args):
        if self.path != "/health":
            print("bookshelf %s %s" % (self.command, fmt % args), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    global shelf
    shelf = Shelf()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("bookshelf listening on 127.0.0.1:%d" % args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
