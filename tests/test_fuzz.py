"""A seeded fuzz test: generated configs, options, environment twins and location strings
must end in exit 0, 2 or 69, one error line per problem, no traceback, no hang and
bounded memory (issue 8).  Set PROCWRAP_FUZZ_CASES and PROCWRAP_FUZZ_SEED to go further:

    PROCWRAP_FUZZ_CASES=50000 PROCWRAP_FUZZ_SEED=7 python3 -m pytest tests/test_fuzz.py
"""
import copy
import json
import os
import queue
import random
import subprocess
import threading

from conftest import PYTHON, ROOT, clean_environ, fixture

CASES = int(os.environ.get("PROCWRAP_FUZZ_CASES", "3000"))
SEED = int(os.environ.get("PROCWRAP_FUZZ_SEED", "20261201"))
#: A case that takes longer than this is a hang.
HANG = 30

NASTY = [
    None, True, False, 0, -1, 1, 2 ** 31, 2 ** 64, 10 ** 400, 0.0001, 1e308, float("nan"),
    float("inf"), float("-inf"), "", " ", "\u00b2", "\u0663", "1\u00b2", "\x00", "a\x00b",
    "-5", "1e400", "10" + "0" * 60, "500ms", "2m", "1h", "9999999999h", "NaN", "Infinity",
    "x" * 5000, "é", "\ud800", "\n", "a\nb", "../../..", "/", "/dev/zero", "/dev/null",
    "/proc/self/mem", "{dir}", "{dir}/missing", "FILE:/dev/zero", "PLAIN:{\"a\":1}!json",
    "ENV:NOPE", "VAULT:secret/x", "CONFIG:$.a", "NOPE:x", "FILE:{dir}/doc.json|JP:$.a",
    "FILE:{dir}/doc.json|JP:$..[?(@.x)]", "|JP:", "!yaml", "$(SECRET)", "$(HOME)", "$$",
    "{{ .NOPE }}", "{{ .HOME }}", "TERM", "SIGKILL", "99", "0:0", "root", "nobody:nogroup",
    "65536", "70000", "-", "Always", "Never", "OnFailure", "always", [], {}, [[]], [{}],
    ["a", 1], {"a": None}, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]

BASE = {
    "env": {"pass": ["PATH", "HOME", "SECRET*"]},
    "logs": {"format": "json", "maxLineBytes": 4096, "directory": "{dir}", "maxBytes": "1MB",
             "backups": 2},
    "finishTimeout": 5,
    "finish": [{"name": "cleanup", "command": "echo bye", "shell": True}],
    "http": "127.0.0.1:0",
    "readinessFile": "{dir}/ready",
    "init": [{"name": "migrate", "command": ["true"], "env": {"A": "1"}}],
    "processes": [
        {"name": "web", "command": "true", "args": ["--port", "$(PORT)"],
         "env": [{"name": "PORT", "value": "8080"},
                 {"name": "SECRET", "valueFrom": {"location": "PLAIN:s3cr3t-value"}},
                 {"name": "URL", "valueFrom": {"template": "x://{{ .SECRET }}@h"}}],
         "envFrom": [{"location": "PLAIN:{\"K\": \"v\"}!json", "prefix": "P_"}],
         "envFile": "{dir}/app.env", "workingDir": "{dir}", "stopSignal": "TERM",
         "stopTimeout": 5, "timeout": "10m", "labels": {"team": "a"},
         "restartPolicy": "OnFailure", "successCodes": [0, 3], "startSeconds": 0,
         "priority": 10, "autostart": True, "mergeStderr": False,
         "logs": {"file": "{dir}/web.log", "maxBytes": 4096, "backups": 1},
         "finish": {"command": ["true"], "timeoutSeconds": 2},
         "backoff": {"initial": 1, "max": 60, "factor": 2, "resetAfter": 120, "limit": 3},
         "readinessProbe": {"httpGet": {"path": "/", "port": 8080,
                                        "httpHeaders": [{"name": "X", "value": "y"}]},
                            "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3},
         "livenessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 1},
         "startupProbe": {"tcpSocket": {"port": 8080}, "successThreshold": 1},
         "lifecycle": {"postStart": {"exec": {"command": ["true"]}},
                       "preStop": {"sleep": {"seconds": 1}, "timeoutSeconds": 2}}},
        {"name": "worker", "command": ["true"], "dependsOn": ["web"], "essential": True,
         "user": "nobody", "readinessProbe": {"file": {"path": "{dir}/ok",
                                                       "maxAgeSeconds": 10}},
         "livenessProbe": {"heartbeat": {"maxAgeSeconds": 30}}},
        {"name": "broker", "command": ["true"], "replicas": 2, "memoryLimit": "256Mi",
         "promTarget": "http://127.0.0.1:9/metrics", "logs": {"format": "logfmt",
                                                              "level": "auto"},
         "readinessProbe": {"amqp": {"url": "amqp://u:p@127.0.0.1:9/%2F"},
                            "timeoutSeconds": 1},
         "livenessProbe": {"sql": {"driver": "sqlite", "dsn": "{dir}/db.sqlite",
                                   "query": "select 1", "expect": 1}},
         "startupProbe": {"env": {"name": "A", "value": "1"}},
         "lifecycle": {"postStart": {"sql": {"driver": "sqlite", "dsn": "$(DB)"}}},
         "env": {"A": "1", "DB": "{dir}/db.sqlite"}},
    ],
    "labels": {"env": "fuzz"},
    "postStart": [{"name": "announce", "command": ["true"]}],
}
FILES = {"app.env": "A=1\nexport B='two'\nC=\"x\\ny\"\n# comment",
         "doc.json": "{\"a\": \"value\", \"b\": [1, 2]}"}
WRAP_OPTIONS = [
    ("--timeout", "10"), ("--stop-signal", "INT"), ("--stop-timeout", "5"),
    ("--retries", "0"), ("--retry-delay", "1"), ("--retry-backoff", "2"),
    ("--retry-max-delay", "60"), ("--retry-jitter", "0.1"), ("--workdir", "{dir}"),
    ("--user", "nobody"), ("--env-file", "{dir}/app.env"), ("--env", "A=1"),
    ("--env-pass", "PATH,HOME"), ("--env-locations", "FILE:{dir}/doc.json!json"),
    ("--merge-strategy", "REPLACE"), ("--resolve-suffix", "_X"), ("--resolve-depth", "3"),
    ("--secrets-ttl", "60"), ("--log-format", "json"), ("--log-max-line", "4096"),
    ("--vault-renew-failure", "stop"), ("--wait-group", None), ("--allow-unresolved", None),
    ("--kill-on-second-signal", None), ("--log-merge-json", None), ("--log-secrets", None),
    ("--env-output-file", "{dir}/out.env"),
    ("--status-updates", None), ("--status-update-port", "0"),
    ("--status-update-interval", "5"), ("--api-heartbeat-interval", "10"),
    ("--api-log-lines", "5"), ("--auto-create-task-props", '{"a": 1}'),
    ("--max-concurrency", "2"), ("--lock-ttl", "5"), ("--lock-timeout", "1"),
    ("--etcd-unavailable", "run"), ("--lock-prefix", "/x/"),
]


def mutate_text(rng, text):
    """A few characters of `text` replaced, dropped or doubled."""
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        if not chars:
            break
        index = rng.randrange(len(chars))
        action = rng.random()
        if action < 0.4:
            chars[index] = rng.choice("0²\x00{}[]:,\"'!|$\\ é9-.")
        elif action < 0.7:
            del chars[index]
        else:
            chars.insert(index, chars[index])
    return "".join(chars)


def nasty(rng):
    value = rng.choice(NASTY)
    return copy.deepcopy(value)


def paths(tree, prefix=()):
    """Every place in a JSON tree, as a tuple of keys and indexes."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            for path in paths(value, prefix + (key,)):
                yield path
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            for path in paths(value, prefix + (index,)):
                yield path


def mutate_config(rng):
    config = copy.deepcopy(BASE)
    for _ in range(rng.randint(1, 4)):
        places = [p for p in paths(config) if p]
        if not places:
            break
        place = rng.choice(places)
        parent = config
        for key in place[:-1]:
            parent = parent[key]
        key = place[-1]
        action = rng.random()
        if action < 0.55:
            parent[key] = nasty(rng)
        elif action < 0.7 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.8 and isinstance(parent, dict) and isinstance(key, str):
            parent[mutate_text(rng, key)] = parent.pop(key)
        elif action < 0.9 and isinstance(parent[key], str):
            parent[key] = mutate_text(rng, parent[key])
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return config


def config_case(rng):
    config = mutate_config(rng)
    kind = rng.random()
    if kind < 0.1:
        # Raw text damage: the config as JSON, with bytes mangled.
        text = mutate_text(rng, json.dumps(config))
        return {"argv": ["check", "-c", "{dir}/c.json"], "files": dict(FILES, **{"c.json": text})}
    if kind < 0.15:
        return {"argv": ["check"], "env": {"PROCWRAP_CONFIG": json.dumps(config)},
                "files": FILES}
    return {"argv": ["check", "-c", json.dumps(config)], "files": FILES}


def run_case(rng):
    """A config that passed nothing yet, run for real with every command made `true`."""
    config = mutate_config(rng)
    for section in ("init", "processes", "postStart"):
        entries = config.get(section)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, dict):
                    entry["command"], entry["restartPolicy"] = ["true"], "Never"
                    entry.pop("args", None)
                    if section != "processes":
                        entry.pop("restartPolicy")
    config["init"] = [e for e in config.get("init", []) if isinstance(e, dict)] \
        if isinstance(config.get("init"), list) else config.get("init")
    return {"argv": ["-c", json.dumps(config)], "files": FILES}


def wrap_case(rng):
    argv, env = [], {}
    for flag, value in rng.sample(WRAP_OPTIONS, rng.randint(1, 5)):
        if rng.random() < 0.5:
            name = "PROCWRAP_" + flag[2:].upper().replace("-", "_")
            if rng.random() < 0.1:
                name = mutate_text(rng, name)
            env[name] = str(nasty(rng)) if rng.random() < 0.5 or value is None \
                else mutate_text(rng, value)
        elif value is None:
            argv.append(flag)
        else:
            text = nasty(rng) if rng.random() < 0.5 else mutate_text(rng, value)
            argv += [flag, str(text)]
    if rng.random() < 0.4:
        location = rng.choice(["FILE:{dir}/doc.json|JP:$.a", "PLAIN:{\"a\": 1}!json|JP:$.a",
                               "ENV:HOME", "{dir}/app.env!dotenv", "FILE:{dir}/doc.json"])
        env["X_FOR_PROCWRAP_TO_RESOLVE"] = (mutate_text(rng, location) if rng.random() < 0.7
                                            else str(nasty(rng)))
    return {"argv": argv + ["--", "true"], "env": env, "files": FILES}


def realistic(text):
    """What a real argv or environment string can be: no NUL, and only the
    surrogates that surrogateescape makes of undecodable bytes."""
    return "".join("\udc80" if 0xd800 <= ord(c) < 0xe000 else c for c in text
                   if c != "\x00")


def generate(seed, count):
    rng = random.Random(seed)
    makers = [(0.55, config_case), (0.15, run_case), (0.30, wrap_case)]
    for _ in range(count):
        roll, total = rng.random(), 0.0
        for weight, maker in makers:
            total += weight
            if roll < total:
                break
        case = maker(rng)
        case["argv"] = [realistic(arg) for arg in case["argv"]]
        case["env"] = dict((realistic(k), realistic(v)) for k, v in case.get("env", {}).items()
                           if realistic(k) and "=" not in realistic(k))
        text = json.dumps(case)
        # Cloud providers would reach for the network: not fuzzed here.
        if "AWS" in text or "arn:" in text or "ssm:" in text:
            continue
        yield case


def worker():
    return subprocess.Popen([PYTHON, fixture("fuzz_worker.py"), ROOT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, universal_newlines=True,
                            env=clean_environ(), cwd="/")


def check(case, answer):
    status, stderr = answer["status"], answer["stderr"]
    problem = None
    allowed = (0, 2, 69)
    if case["argv"][:1] != ["check"]:
        allowed += (124,)       # `true` may really outlive a timeout of 0.0001 s
    if status not in allowed:
        problem = "exit status %r" % status
    elif "Traceback" in stderr or "internal error" in stderr or answer.get("bug"):
        problem = "a traceback"
    elif status == 2 and not stderr.startswith("procwrap: "):
        problem = "exit 2 without an error line"
    return problem


def test_fuzz_configs_options_twins_and_locations():
    cases = list(generate(SEED, CASES))
    halves = [cases[0::2], cases[1::2]]
    failures, rss, statuses = [], [], []

    def drive(part):
        proc = worker()
        answers = queue.Queue()

        def read():
            for line in iter(proc.stdout.readline, ""):
                answers.put(json.loads(line))
            answers.put(None)
        threading.Thread(target=read, daemon=True).start()
        try:
            for case in part:
                proc.stdin.write(json.dumps(case) + "\n")
                proc.stdin.flush()
                try:
                    answer = answers.get(timeout=HANG)
                except queue.Empty:
                    failures.append((case, "no answer within %d s (a hang)" % HANG, ""))
                    return
                if answer is None:
                    failures.append((case, "the worker died", ""))
                    return
                statuses.append(answer["status"])
                problem = check(case, answer)
                if problem:
                    failures.append((case, problem, answer["stderr"]))
                rss.append(answer["rss_kb"])
        finally:
            proc.stdin.close()          # the worker removes its scratch directory and ends
            try:
                proc.wait(HANG)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    threads = [threading.Thread(target=drive, args=(part,)) for part in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        case, problem, stderr = failures[0]
        if "Traceback" in stderr:
            stderr = stderr[stderr.index("Traceback"):]
        raise AssertionError("%d of %d cases failed (seed %d); the first:\n%s\n%s\n%s" % (
            len(failures), len(cases), SEED, json.dumps(case)[:3000], problem, stderr[:3000]))
    assert max(rss) < 128 * 1024, "a worker grew to %d MB" % (max(rss) // 1024)
    # The generator must reach past the config checker: some cases run.
    assert statuses.count(0) > len(cases) // 20 and statuses.count(2) > len(cases) // 4
    print("fuzz: %d cases, exit statuses %s, max RSS %d MB" % (
        len(cases), dict((s, statuses.count(s)) for s in sorted(set(statuses))),
        max(rss) // 1024))
