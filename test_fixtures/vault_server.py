#!/usr/bin/env python3
"""A small HTTP server that answers the part of Vault's API procwrap uses.

No Vault server can be installed on the test machines, so this speaks the
documented shapes (SPECS.md section 2): token and AppRole auth, KV v1 and
v2 reads, database and AWS credentials with short renewable leases, token and
lease renewal, and Vault's {"errors": [...]} error bodies.

    python3 vault_server.py DATA.json [--token-ttl S] [--lease-ttl S]
                           [--fail-renew-after N] [--token-renewable 0|1]
                           [--tls CERT KEY]

DATA.json maps mount paths to secrets: {"kv/app": {...}} is served as KV v1
at /v1/kv/app, {"secret/app": {...}} as KV v2 at /v1/secret/data/app.
Prints "ready PORT" once listening on 127.0.0.1.  GET /_test/requests
returns every request so far as ["METHOD /path token namespace", ...].
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

ROOT_TOKEN = "root-token"
ROLE_ID, SECRET_ID = "app-role", "app-secret"


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class State(object):
    def __init__(self, options, data):
        self.options = options
        self.data = data
        self.tokens = {ROOT_TOKEN: {"ttl": 0, "renewable": False}}
        self.leases = {}
        self.requests = []
        self.renewals = 0
        self.counter = 0
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    state = None

    def log_message(self, *args):
        pass

    def reply(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, *messages):
        self.reply(status, {"errors": list(messages)})

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length).decode() or "{}") if length else {}

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def do_PUT(self):
        self.handle_request("POST")

    def handle_request(self, method):
        state = self.state
        token = self.headers.get("X-Vault-Token")
        with state.lock:
            state.requests.append("%s %s %s %s" % (method, self.path, token,
                                                   self.headers.get("X-Vault-Namespace")))
        if self.path == "/_test/requests":
            return self.reply(200, state.requests)
        if not self.path.startswith("/v1/"):
            return self.error(404)
        path = self.path[len("/v1/"):].split("?")[0]
        if path == "auth/approle/login" and method == "POST":
            body = self.body()
            if body.get("role_id") != ROLE_ID or body.get("secret_id") != SECRET_ID:
                return self.error(400, "invalid role or secret ID")
            with state.lock:
                state.counter += 1
                new = "approle-token-%d" % state.counter
                state.tokens[new] = {"ttl": state.options.token_ttl, "renewable": True}
            return self.reply(200, {"auth": {"client_token": new, "accessor": "acc",
                                             "lease_duration": state.options.token_ttl,
                                             "renewable": True, "policies": ["default"]},
                                    "data": None, "lease_id": "", "renewable": False})
        if token not in state.tokens:
            return self.error(403, "permission denied", "invalid token")
        if path == "auth/token/lookup-self":
            info = state.tokens[token]
            renewable = info["renewable"] or state.options.token_renewable
            ttl = info["ttl"] or (state.options.token_ttl if state.options.token_renewable else 0)
            return self.reply(200, {"data": {"id": token, "ttl": ttl, "renewable": renewable}})
        if path == "auth/token/renew-self" and method == "POST":
            return self.renew({"auth": {"client_token": token, "renewable": True,
                                        "lease_duration": state.options.token_ttl}})
        if path == "sys/leases/renew" and method == "POST":
            lease_id = self.body().get("lease_id")
            if lease_id not in state.leases:
                return self.error(400, "lease not found")
            return self.renew({"lease_id": lease_id, "renewable": True,
                               "lease_duration": state.options.lease_ttl})
        if path.startswith("database/creds/") and method == "GET":
            role = path[len("database/creds/"):]
            with state.lock:
                state.counter += 1
                number = state.counter
                lease_id = "database/creds/%s/lease-%d" % (role, number)
                state.leases[lease_id] = True
            return self.reply(200, {"lease_id": lease_id, "renewable": True,
                                    "lease_duration": state.options.lease_ttl,
                                    "data": {"username": "v-%s-%d" % (role, number),
                                             "password": "db-pass-%d" % number}})
        if path.startswith("aws/creds/") and method == "GET":
            role = path[len("aws/creds/"):]
            with state.lock:
                state.counter += 1
                lease_id = "aws/creds/%s/lease-%d" % (role, state.counter)
                state.leases[lease_id] = True
            return self.reply(200, {"lease_id": lease_id, "renewable": True,
                                    "lease_duration": state.options.lease_ttl,
                                    "data": {"access_key": "AKIAFAKE%d" % state.counter,
                                             "secret_key": "aws-secret-%d" % state.counter,
                                             "security_token": None}})
        if path.startswith("secret/data/"):
            key = "secret/" + path[len("secret/data/"):]
            if key not in state.data:
                return self.error(404)
            return self.reply(200, {"lease_id": "", "renewable": False, "lease_duration": 0,
                                    "data": {"data": state.data[key],
                                             "metadata": {"version": 1, "destroyed": False,
                                                          "deletion_time": ""}}})
        if path in state.data:
            return self.reply(200, {"lease_id": "", "renewable": False,
                                    "lease_duration": 2764800, "data": state.data[path]})
        return self.error(404)

    def renew(self, answer):
        state = self.state
        with state.lock:
            state.renewals += 1
            failing = (state.options.fail_renew_after is not None
                       and state.renewals > state.options.fail_renew_after)
        if failing:
            return self.error(503, "Vault is sealed")
        return self.reply(200, answer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--lease-ttl", type=int, default=3600)
    parser.add_argument("--fail-renew-after", type=int, default=None)
    parser.add_argument("--token-renewable", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=None)
    options = parser.parse_args()
    with open(options.data) as stream:
        data = json.load(stream)
    Handler.state = State(options, data)
    server = Server(("127.0.0.1", 0), Handler)
    if options.tls:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*options.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    sys.stdout.write("ready %d\n" % server.server_address[1])
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
