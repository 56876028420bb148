"""The cloud APIs a pod talks to, as HTTP servers on loopback that answer as
their documentation says (SPECS.md 12.1-12.3): GCE's metadata server (the
preemption flag and its hanging GETs), Envoy's admin drain endpoint, and the
Kubernetes API's pod GET and watch (HTTPS, a bearer token).  Each records
its requests; mocked at the HTTP boundary only."""
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlsplit

WAIT = 60


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, address):
        """A client that went away mid-answer (procwrap stopped) is no news."""
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            HTTPServer.handle_error(self, request, address)


class _Fake(object):
    """A server in a thread: .port, .requests ([(method, path, query, headers)]),
    .changed (a Condition notified on every request and change)."""

    def __init__(self, handler, context=None, hang=WAIT):
        self.hang = hang            #: the longest a held request is held (the benchmark's: more)
        self.requests = []
        self.changed = threading.Condition()
        handler.owner = self
        self.server = _Server(("127.0.0.1", 0), handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, request):
        parts = urlsplit(request.path)
        with self.changed:
            self.requests.append((request.command, parts.path, parse_qs(parts.query),
                                  dict(request.headers.items())))
            self.changed.notify_all()

    def wait_for(self, predicate, what):
        """Until predicate() holds (checked on each request or change), bounded."""
        with self.changed:
            if not self.changed.wait_for(predicate, WAIT):
                raise AssertionError("timed out waiting for " + what)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner = None

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Metadata(_Fake):
    """GCE's metadata server, `instance/preempted` only: FALSE until set(),
    an ETag per value, Metadata-Flavor: Google required;
    ?wait_for_change=true hangs until the value's ETag differs from
    last_etag (at once if it already does) or timeout_sec passes."""
    PATH = "/computeMetadata/v1/instance/preempted"

    def __init__(self, hang=WAIT):
        self.value, self.version = "FALSE", 1
        self.hanging = 0            #: hanging GETs waiting now

        class Handler(_Handler):
            def do_GET(self):
                owner = self.owner
                owner.record(self)
                path, query = owner.requests[-1][1], owner.requests[-1][2]
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self.answer(403, "Missing Metadata-Flavor:Google header.\n")
                if path != owner.PATH:
                    return self.answer(404, "not found\n")
                if query.get("wait_for_change") == ["true"]:
                    seen = query.get("last_etag", [owner.etag()])[0]
                    limit = float(query.get("timeout_sec", ["3600"])[0])
                    with owner.changed:
                        owner.hanging += 1
                        owner.changed.notify_all()
                        owner.changed.wait_for(lambda: owner.etag() != seen,
                                               min(limit, owner.hang))
                        owner.hanging -= 1
                self.answer(200, owner.value, [("ETag", owner.etag()),
                                               ("Content-Type", "application/text"),
                                               ("Metadata-Flavor", "Google")])
        _Fake.__init__(self, Handler, hang=hang)
        self.url = "http://127.0.0.1:%d%s" % (self.port, self.PATH)

    def etag(self):
        return "%016x" % (self.version * 7919)

    def set(self, value):
        with self.changed:
            self.value, self.version = value, self.version + 1
            self.changed.notify_all()


class Envoy(_Fake):
    """Envoy's admin drain endpoint: POST /drain_listeners answers 200 OK,
    a GET 405, as Envoy does."""

    def __init__(self):
        class Handler(_Handler):
            def do_POST(self):
                self.owner.record(self)
                if self.path.split("?")[0] != "/drain_listeners":
                    return self.answer(404, "invalid path\n")
                self.answer(200, "OK\n")

            def do_GET(self):
                self.owner.record(self)
                self.answer(405, "Method GET not allowed, POST required.\n")
        _Fake.__init__(self, Handler)
        self.url = "http://127.0.0.1:%d/drain_listeners?inboundonly&graceful" % self.port


class Kubernetes(_Fake):
    """The API server, one pod: GET /api/v1/namespaces/NS/pods/NAME and
    GET .../pods?watch=1&fieldSelector=metadata.name%3DNAME&resourceVersion=RV,
    a chunked stream of JSON events (MODIFIED for each change after RV; an
    ERROR 410 when RV is older than `oldest`); a bearer token checked (401
    with a Status otherwise), HTTPS with the test's certificate."""

    def __init__(self, namespace, name, containers, token, certificate, key, hang=WAIT):
        self.namespace, self.name, self.token = namespace, name, token
        self.history = []           #: [(resourceVersion, pod)], oldest first
        self.oldest = 0             #: versions below this are gone (410)
        self.epoch = 0              #: expire() ends the watches open then
        self.watching = 0           #: watch streams open now
        self.pod = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace, "resourceVersion": "0"},
                    "spec": {"containers": [{"name": c} for c in containers]},
                    "status": {"phase": "Running", "containerStatuses": [
                        {"name": c, "ready": True, "started": True, "restartCount": 0,
                         "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}
                        for c in containers]}}
        base = "/api/v1/namespaces/%s/pods" % namespace

        class Handler(_Handler):
            def status(self, code, reason, message):
                self.answer(code, json.dumps({"kind": "Status", "apiVersion": "v1",
                                              "status": "Failure", "message": message,
                                              "reason": reason, "code": code}),
                            [("Content-Type", "application/json")])

            def do_GET(self):
                owner = self.owner
                owner.record(self)
                path, query = owner.requests[-1][1], owner.requests[-1][2]
                if self.headers.get("Authorization") != "Bearer " + owner.token:
                    return self.status(401, "Unauthorized", "Unauthorized")
                if path == base + "/" + owner.name:
                    with owner.changed:
                        pod = json.dumps(owner.history[-1][1])
                    return self.answer(200, pod, [("Content-Type", "application/json")])
                if path != base or query.get("watch") != ["1"] or query.get(
                        "fieldSelector") != ["metadata.name=" + owner.name]:
                    return self.status(404, "NotFound", "the server could not find the "
                                       "requested resource")
                since = int(query.get("resourceVersion", ["0"])[0])
                limit = min(float(query.get("timeoutSeconds", ["1800"])[0]), owner.hang)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + limit
                with owner.changed:
                    if since < owner.oldest:
                        self.chunk({"type": "ERROR", "object": {
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "too old resource version: %d (%d)" % (
                                since, owner.oldest), "reason": "Expired", "code": 410}})
                        return self.end()
                    sent, epoch = since, owner.epoch
                    owner.watching += 1
                    owner.changed.notify_all()
                    while owner.epoch == epoch:
                        for version, pod in owner.history:
                            if version > sent:
                                self.chunk({"type": "MODIFIED", "object": pod})
                                sent = version
                        if time.monotonic() >= deadline:
                            break
                        owner.changed.wait(max(0.0, deadline - time.monotonic()))
                    owner.watching -= 1
                self.end()

            def chunk(self, event):
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def end(self):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        _Fake.__init__(self, Handler, context, hang)
        self.update(lambda pod: None)

    def update(self, change):
        """Change the pod (change(pod) edits it) as a new resourceVersion."""
        with self.changed:
            change(self.pod)
            version = len(self.history) + 100
            self.pod["metadata"]["resourceVersion"] = str(version)
            self.history.append((version, json.loads(json.dumps(self.pod))))
            self.changed.notify_all()

    def terminate(self, container, exit_code=0, reason="Completed"):
        def change(pod):
            for status in pod["status"]["containerStatuses"]:
                if status["name"] == container:
                    status["ready"] = False
                    status["state"] = {"terminated": {
                        "exitCode": exit_code, "reason": reason,
                        "startedAt": "2026-12-01T00:00:00Z",
                        "finishedAt": "2026-12-01T00:01:00Z"}}
        self.update(change)

    def expire(self):
        """A new version, every one before it forgotten, the watches open
        ended: a watch from an old version gets an ERROR 410."""
        with self.changed:      # one step: no open watch sees the new version
            self.update(lambda pod: None)
            self.oldest = self.history[-1][0]
            self.epoch += 1
            self.changed.notify_all()
