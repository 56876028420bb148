"""Limits across machines through a real etcd (issue 12, wrap mode): at most
N commands at once, FIFO, a bounded wait, a slot freed by a killed holder,
a lost lease stopping the command, etcd down at the start."""
import json
import os
import signal
import time
import uuid

from conftest import PYTHON, clean_environ, run, wait_until

# A command that records its start and end (wall time) in its own file.
RECORD = ("import sys, time, json\n"
          "start = time.time()\n"
          "time.sleep(float(sys.argv[2]))\n"
          "open(sys.argv[1], 'w').write(json.dumps([start, time.time()]))\n")


def locked(etcd, name, *args):
    """procwrap's options for lock `name` on the suite's etcd."""
    return ["--lock", name, "--etcd", etcd.url, "--lock-ttl", "3", "--log-format", "json"] \
        + list(args)


def test_never_more_than_n_at_once(etcd, tmp_path, background):
    name = "n2-" + uuid.uuid4().hex[:8]
    runs = [background(*(locked(etcd, name, "--max-concurrency", "2") + [
        "--", PYTHON, "-c", RECORD, str(tmp_path / ("run%d" % i)),
        "1"])) for i in range(3)]
    for bg in runs:
        assert bg.wait(60) == 0, bg.stderr
    spans = [json.loads((tmp_path / ("run%d" % i)).read_text()) for i in range(3)]
    for moment in [start for start, _ in spans]:
        assert sum(1 for start, end in spans if start <= moment < end) <= 2
    waited = [bg for bg in runs if any('"lock-waiting"' in line for line in bg.out)]
    assert len(waited) == 1
    assert etcd.keys("/procwrap/locks/%s/" % name) == []      # every slot given back


def test_waiters_are_served_in_arrival_order(etcd, tmp_path, background):
    name = "fifo-" + uuid.uuid4().hex[:8]
    gate = tmp_path / "gate"
    os.mkfifo(str(gate))
    order = tmp_path / "order"
    holder = background(*(locked(etcd, name) + ["--", "sh", "-c", "read line < %s" % gate]))
    holder.expect('"lock-acquired"')
    waiters = []
    for label in ("b", "c", "d"):
        bg = background(*(locked(etcd, name) + ["--", "sh", "-c", "echo %s >> %s" % (
            label, order)]))
        bg.expect('"lock-waiting"')
        waiters.append(bg)
    with open(str(gate), "w") as stream:
        stream.write("go\n")
    for bg in [holder] + waiters:
        assert bg.wait(60) == 0, bg.stderr
    assert order.read_text().split() == ["b", "c", "d"]


def test_a_bounded_wait_exits_75_and_leaves_no_key(etcd, tmp_path, background):
    name = "timeout-" + uuid.uuid4().hex[:8]
    holder = background(*(locked(etcd, name) + ["--", "sleep", "30"]))
    holder.expect('"lock-acquired"')
    marker = tmp_path / "ran"
    began = time.monotonic()
    result = run(*(locked(etcd, name, "--lock-timeout", "0.5") + ["--", "touch", str(marker)]))
    assert result.returncode == 75, result.stderr
    assert time.monotonic() - began < 10
    assert not marker.exists()
    assert "no slot free within 0.5 s" in result.stdout
    assert len(etcd.keys("/procwrap/locks/%s/" % name)) == 1   # the holder's only
    holder.signal(signal.SIGTERM)
    assert holder.wait() == 143


def test_a_killed_holder_frees_its_slot_within_the_ttl(etcd, background):
    name = "kill-" + uuid.uuid4().hex[:8]
    holder = background(*(locked(etcd, name) + ["--", "sleep", "300"]))
    holder.expect('"lock-acquired"')
    waiter = background(*(locked(etcd, name) + ["--", "sh", "-c", "echo took over"]))
    waiter.expect('"lock-waiting"')
    killed = time.monotonic()
    holder.proc.kill()
    waiter.expect('"took over"', timeout=30)
    assert time.monotonic() - killed < 3 + 5       # the TTL (3 s), and some slack
    assert waiter.wait() == 0


def test_a_lost_lease_stops_the_command(etcd, background):
    """The lease is revoked behind procwrap's back: the command is stopped
    (its stop signal, the grace, SIGKILL) and procwrap exits 75."""
    name = "lost-" + uuid.uuid4().hex[:8]
    script = "trap 'echo got TERM; exit 4' TERM; echo trapped; sleep 300 & wait"
    bg = background(*(locked(etcd, name) + ["--", "sh", "-c", script]))
    bg.expect('"lock-acquired"')
    bg.expect("trapped")        # a TERM before the trap is set would end sh silently
    [(key, value)] = etcd.keys("/procwrap/locks/%s/" % name)
    assert json.loads(value)["pid"] == bg.pid
    etcd.call("/lease/revoke", {"ID": str(int(key.rsplit("/", 1)[1], 16))})
    assert bg.wait(30) == 75
    assert any("got TERM" in line for line in bg.out)
    assert any("lost the slot" in line for line in bg.out)


def test_etcd_down_at_the_start(tmp_path):
    from conftest import free_port
    url = "http://127.0.0.1:%d" % free_port()
    marker = tmp_path / "ran"
    failed = run("--lock", "x", "--etcd", url, "--", "touch", str(marker))
    assert failed.returncode == 69, failed.stderr
    assert not marker.exists()
    assert "lock x: etcd:" in failed.stderr
    ran = run("--lock", "x", "--etcd", url, "--etcd-unavailable", "run", "--", "touch",
              str(marker), env=clean_environ())
    assert ran.returncode == 0, ran.stderr
    assert marker.exists()
    assert "running without the lock" in ran.stderr


def test_locks_lists_holders_then_waiters(etcd, background):
    name = "list-" + uuid.uuid4().hex[:8]
    holder = background(*(locked(etcd, name) + ["--", "sleep", "300"]))
    holder.expect('"lock-acquired"')
    waiter = background(*(locked(etcd, name) + ["--", "true"]))
    waiter.expect('"lock-waiting"')
    listing = run("locks", name, "--etcd", etcd.url)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0] == ["#", "STATE", "HOST", "PID", "SINCE"]
    expected = [("holding", str(holder.pid)), ("waiting", str(waiter.pid))]
    assert [(row[1], row[3]) for row in rows[1:]] == expected
    holder.signal(signal.SIGTERM)
    assert holder.wait() == 143 and waiter.wait() == 0
    assert run("locks", name, "--etcd", etcd.url).stdout.splitlines()[1:] == []
    down = run("locks", name, "--etcd", "http://127.0.0.1:1")
    assert down.returncode == 69 and "locks: etcd:" in down.stderr


def test_auth_and_tls(secure_etcd, tmp_path):
    """TLS with a client certificate, a user whose password comes from a
    location (never argv): the slot is taken; a wrong password is 69."""
    name = "secure-" + uuid.uuid4().hex[:8]
    args = ["--lock", name, "--etcd", secure_etcd.url, "--etcd-cacert", secure_etcd.server_cert,
            "--etcd-cert", secure_etcd.cert, "--etcd-key", secure_etcd.key,
            "--etcd-user", "root", "--etcd-password", "ENV:ETCD_PW", "--log-format", "json"]
    good = run(*(args + ["--", "sh", "-c", "exit 0"]),
               env=clean_environ(ETCD_PW=secure_etcd.password))
    assert good.returncode == 0, good.stderr
    assert '"lock-acquired"' in good.stdout
    assert secure_etcd.password not in good.stdout + good.stderr
    wrong = run(*(args + ["--", "true"]), env=clean_environ(ETCD_PW="not-it"))
    assert wrong.returncode == 69
    assert "lock %s: etcd:" % name in wrong.stdout + wrong.stderr


def test_a_member_killed_mid_run_keeps_the_slot(etcd_cluster, background):
    """Three members; the one procwrap talks to dies while it holds the slot:
    keep-alives go to another member, the slot is kept past several TTLs, and
    a second contender still waits."""
    name = "cluster-" + uuid.uuid4().hex[:8]
    urls = ",".join(etcd_cluster.urls)
    args = ["--lock", name, "--etcd", urls, "--lock-ttl", "2", "--log-format", "json"]
    holder = background(*(args + ["--", "sleep", "300"]))
    holder.expect('"lock-acquired"')
    etcd_cluster.kill(0)
    time.sleep(5)           # the duration asserted: over two TTLs with member 0 gone
    assert holder.proc.poll() is None
    assert not any("lost the slot" in line for line in holder.out)
    waiter = background(*(args + ["--lock-timeout", "1", "--", "true"]))
    assert waiter.wait(30) == 75            # the slot is still taken
    holder.signal(signal.SIGTERM)
    assert holder.wait() == 143


def test_on_lock_loss_wait_takes_a_slot_again_and_starts_again(etcd, tmp_path, background):
    name = "rewait-" + uuid.uuid4().hex[:8]
    count = tmp_path / "starts"
    script = ("echo x >> %s; n=$(wc -l < %s); echo start $n; "
              "if [ $n -ge 2 ]; then exit 0; fi; sleep 300 & wait" % (count, count))
    bg = background(*(locked(etcd, name, "--on-lock-loss", "wait") + ["--", "sh", "-c",
                                                                      script]))
    bg.expect('"start 1"')
    [(key, _)] = etcd.keys("/procwrap/locks/%s/" % name)
    etcd.call("/lease/revoke", {"ID": str(int(key.rsplit("/", 1)[1], 16))})
    bg.expect('"start 2"', timeout=30)
    assert bg.wait(30) == 0
    assert any('"lock-lost"' in line for line in bg.out)
    assert len([line for line in bg.out if '"lock-acquired"' in line]) == 2


def test_a_singleton_fails_over_between_two_supervisors(etcd, tmp_path, background):
    """Two supervisors with the same singleton: one runs it, the other shows
    it waiting (not ready, still live) with the holder; SIGKILL the first and
    the second takes over within the TTL."""
    import http.client
    from conftest import write_config
    name = "sched-" + uuid.uuid4().hex[:8]
    config = {"etcd": {"endpoints": [etcd.url], "ttl": 2},
              "processes": [{"name": name, "command": ["sh", "-c", "echo active; sleep 300"],
                             "singleton": True},
                            {"name": "web", "command": ["sleep", "300"]}]}
    path = write_config(tmp_path, config)
    first = background("-c", path, "--http", "127.0.0.1:0")
    first.expect('"active"')
    socket_path = str(tmp_path / "ctl.sock")
    second = background("-c", path, "--http", "127.0.0.1:0", "--ctl-socket", socket_path)
    address = second.expect_event("http")["address"]
    second.expect('"lock-waiting"')
    table = run("ctl", "--socket", socket_path, "status").stdout
    [row] = [line for line in table.splitlines() if line.startswith(name)]
    assert "waiting" in row and "standby: %s held by " % name in row

    def get(where):
        host, port = address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", where)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    status = dict((p["name"], p) for p in json.loads(get("/status")[1])["processes"])
    assert status[name]["state"] == "waiting"
    assert status[name]["lock"]["held"] is False
    assert [h["pid"] for h in status[name]["lock"]["holders"]] == [first.pid]
    assert get("/liveness")[0] == 200 and get("/readiness")[0] == 503
    assert 'procwrap_lock_held{lock="%s",name="%s"} 0' % (name, name) in get("/metrics")[1]
    killed = time.monotonic()
    first.proc.kill()
    second.expect('"active"', timeout=30)
    assert time.monotonic() - killed < 2 + 5
    wait_until(lambda: get("/readiness")[0] == 200, what="the second to be ready")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert etcd.keys("/procwrap/locks/%s/" % name) == []


def test_lock_fields_are_checked(tmp_path):
    from conftest import write_config
    config = {"processes": [
        {"name": "a", "command": ["true"], "singleton": True, "maxConcurrency": 2},
        {"name": "b", "command": ["true"], "maxConcurrency": 2},
        {"name": "c", "command": ["true"], "lock": "x/y"},
        {"name": "d", "command": ["true"], "singleton": True}]}
    result = run("check", "-c", write_config(tmp_path, config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "procwrap: error: processes[0].maxConcurrency: a singleton has one slot; drop "
        "maxConcurrency or singleton",
        "procwrap: error: processes[1].maxConcurrency: needs lock: the name its slots share "
        "across machines",
        "procwrap: error: processes[2].lock: 'x/y' is not a lock name; use one without '/'",
        "procwrap: error: processes[3]: a lock across machines needs the top-level etcd "
        'section: {"etcd": {"endpoints": [URL]}}']


def test_a_lock_timeout_of_zero_looks_once(etcd, tmp_path, background):
    name = "zero-" + uuid.uuid4().hex[:8]
    free = run(*(locked(etcd, name, "--lock-timeout", "0") + ["--", "sh", "-c", "exit 7"]))
    assert free.returncode == 7, free.stderr        # a free slot is taken at once
    holder = background(*(locked(etcd, name) + ["--", "sleep", "300"]))
    holder.expect('"lock-acquired"')
    taken = run(*(locked(etcd, name, "--lock-timeout", "0") + ["--", "true"]))
    assert taken.returncode == 75
    assert "not waiting (--lock-timeout 0)" in taken.stdout
    holder.signal(signal.SIGTERM)
    assert holder.wait() == 143


def test_max_concurrency_across_supervisors_and_etcd_down(etcd, tmp_path, background):
    """Two supervisors, two processes each, three slots of one lock: three run,
    one waits, and takes a slot when a supervisor goes.  With etcd down a
    start fails closed (69) and the restart policy decides."""
    from conftest import free_port, write_config
    name = "pool-" + uuid.uuid4().hex[:8]

    def config(tag):
        return {"etcd": {"endpoints": [etcd.url], "ttl": 2}, "processes": [
            {"name": "w%s%d" % (tag, i), "command": ["sh", "-c", "echo active; sleep 300"],
             "lock": name, "maxConcurrency": 3} for i in (1, 2)]}
    first = background("-c", write_config(tmp_path, config("a"), "a.json"))
    first.expect('"active"', count=2)
    second = background("-c", write_config(tmp_path, config("b"), "b.json"))
    second.expect('"active"')
    second.expect('"lock-waiting"')
    assert len(etcd.keys("/procwrap/locks/%s/" % name)) == 4
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    second.expect('"active"', count=2, timeout=30)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    down = dict(config("c"), etcd={"endpoints": ["http://127.0.0.1:%d" % free_port()]})
    down["processes"] = down["processes"][:1]
    down["processes"][0]["restartPolicy"] = "Never"
    result = run("-c", write_config(tmp_path, down, "c.json"))
    assert result.returncode == 69, result.stderr
    assert '"active"' not in result.stdout


def test_a_deleted_key_stops_the_command(etcd, background):
    """The key deleted behind procwrap's back (its lease still alive): the
    slot is no longer ours, the command stops, exit 75."""
    import base64
    name = "gone-" + uuid.uuid4().hex[:8]
    bg = background(*(locked(etcd, name) + ["--", "sleep", "300"]))
    bg.expect('"lock-acquired"')
    [(key, _)] = etcd.keys("/procwrap/locks/%s/" % name)
    etcd.call("/kv/deleterange", {"key": base64.b64encode(key.encode()).decode()})
    assert bg.wait(30) == 75
    assert any("our key was deleted" in line for line in bg.out)


def test_retries_keep_the_slot(etcd, tmp_path):
    name = "retry-" + uuid.uuid4().hex[:8]
    result = run(*(locked(etcd, name, "--retries", "2", "--retry-delay", "0") + [
        "--", "sh", "-c", "exit 3"]))
    assert result.returncode == 3, result.stderr
    assert result.stdout.count('"lock-acquired"') == 1
    assert result.stdout.count('"started"') == 3


def test_a_release_the_worker_has_not_done_is_done_at_the_end(etcd):
    """release() hands the revoke to the worker; a run that ends before the
    worker got to it (a shutdown right after a stop) revokes it in
    release_now(), so the slot is free at once, not a TTL later."""
    import threading
    import procwrap
    name = "late-" + uuid.uuid4().hex[:8]
    loop = procwrap._Loop()
    semaphore = procwrap._Semaphore(loop, procwrap._Log("none", quiet=True),
                                    procwrap._Etcd([etcd.url]), name, 1, ttl=60)
    answers = []

    def acquired(refused):
        answers.append(refused)
        loop.stopped = True
    semaphore.acquire(None, acquired)
    guard = loop.call_later(30, setattr, loop, "stopped", True)
    loop.run()
    guard.cancel()
    assert answers == [None] and len(etcd.keys("/procwrap/locks/%s/" % name)) == 1
    gate = threading.Event()
    loop.run_in_worker(lambda: gate.wait(30), lambda result, error: None)   # worker busy
    try:
        semaphore.release()             # its revoke waits behind the gate
        semaphore.release_now()         # the run's end
        assert etcd.keys("/procwrap/locks/%s/" % name) == []
    finally:
        gate.set()
        loop.close()
