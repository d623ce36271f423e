"""The example app of docker-compose.yml: a small HTTP server and a client that calls it in
a loop, so tapline has traffic to see. Every fifth call asks for a path that answers 500, and
every seventh posts a JSON body, so the capture rules (errors in full) have something to do.
Standard library only."""
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/fail"):
            self._answer(500, {"error": "simulated failure"})
        else:
            self._answer(200, {"path": self.path, "items": [1, 2, 3]})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self._answer(201, {"received": json.loads(self.rfile.read(length) or b"null")})

    def log_message(self, *args):
        pass


def client():
    n = 0
    while True:
        n += 1
        path = "/fail" if n % 5 == 0 else f"/items/{n}"
        req = urllib.request.Request(f"http://127.0.0.1:8080{path}")
        if n % 7 == 0:
            req = urllib.request.Request("http://127.0.0.1:8080/orders", data=json.dumps({"n": n}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
        except urllib.error.HTTPError as e:
            e.read()
        except OSError as e:
            print("request failed:", e, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client()
