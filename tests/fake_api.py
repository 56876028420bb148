"""A CloudReactor-style API server for the reporting tests: a real HTTP
server on loopback that records every request and answers by a plan
(201/200 by default; 409, 429 with Retry-After, 500, slow, or a dropped
connection when told).  Mocked at the HTTP boundary only."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class ApiServer(object):
    """Start it, point procwrap at .url, read .requests."""

    def __init__(self):
        self.requests = []          #: [{"method", "path", "headers", "body", "time"}]
        self.plans = []             #: [(method, status, headers, delay, body)], taken in order
        self.changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                record = {"method": self.command, "path": self.path, "body": body,
                          "headers": dict(self.headers.items()), "time": time.monotonic()}
                plan = owner._take(self.command)
                with owner.changed:
                    owner.requests.append(record)
                    owner.changed.notify_all()
                status, headers, delay, answer = plan
                if delay:
                    time.sleep(delay)
                if status == "drop":
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_GET = do_PUT = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def plan(self, method, status, times=1, headers=None, delay=0, body=None):
        """The next `times` requests with `method` get this answer."""
        with self.changed:
            self.plans.extend([(method, status, headers, delay, body)] * times)

    def _take(self, method):
        with self.changed:
            for index, plan in enumerate(self.plans):
                if plan[0] == method:
                    del self.plans[index]
                    return plan[1:]
        if method == "POST":
            return 201, None, 0, {"uuid": "exec-1", "task": {"uuid": "task-1", "name": "t"}}
        return 200, None, 0, {}

    def wait_for(self, predicate, timeout=30, what="requests"):
        """Wait until predicate(requests) is true; the requests then."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("never saw %s; got %r" % (what, [
                        (r["method"], r["path"], r["body"]) for r in self.requests]))
                self.changed.wait(left)
            return list(self.requests)

    def merged(self):
        """Every PATCH body merged in order: what the server knows at the end."""
        merged = {}
        for body in self.bodies("PATCH"):
            merged.update(body)
        return merged

    def bodies(self, method=None):
        return [r["body"] for r in self.requests if method is None or r["method"] == method]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
