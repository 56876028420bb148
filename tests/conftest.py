"""Shared helpers: run procwrap's CLI for real and wait on what it prints."""
import contextlib
import functools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

#: The suite imports procwrap.py and fixtures from the repository: no
#: __pycache__ there (a fresh machine has no PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = True

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCWRAP = os.path.join(ROOT, "procwrap.py")
FIXTURES = os.path.join(ROOT, "test_fixtures")
PYTHON = sys.executable
TEST_USER = "procwrap-test"

#: Upper bound of every wait in the suite.  Generous: these VMs pause.
WAIT = 60

sys.path.insert(0, ROOT)


def fixture(name):
    return os.path.join(FIXTURES, name)


def clean_environ(**extra):
    """os.environ without PROCWRAP_* (so the suite ignores the caller's), plus extra."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PROCWRAP_"))
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _no_procwrap_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("PROCWRAP_"):
            monkeypatch.delenv(key)


def run(*args, **kwargs):
    """Run `procwrap.py ARGS` to completion; a CompletedProcess with text output."""
    python = kwargs.pop("python", PYTHON)
    env = kwargs.pop("env", None) or clean_environ()
    return subprocess.run([python, PROCWRAP] + list(args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=kwargs.pop("timeout", WAIT),
                          **kwargs)


def records(text):
    """JSON records, one per line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events(text, event=None):
    """procwrap's own records (optionally of one event type)."""
    return [r for r in records(text) if r.get("process") == "procwrap"
            and (event is None or r.get("event") == event)]


def lines_of(text, process, stream="stdout"):
    return [r["message"] for r in records(text)
            if r.get("process") == process and r.get("stream") == stream]


class Background(object):
    """procwrap started in the background; threads collect its stdout and stderr lines."""

    def __init__(self, args, env=None, python=PYTHON, cwd=None, preexec=None,
                 command=None):
        argv = command if command is not None else [python, PROCWRAP] + list(args)
        self.proc = subprocess.Popen(argv, env=env or clean_environ(), cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec)
        self.pid = self.proc.pid
        self.out, self.err = [], []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out)),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err))]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _read(self, stream, into):
        for raw in iter(stream.readline, b""):
            with self._changed:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def expect(self, text, stream="out", timeout=WAIT, count=1):
        """Wait until `count` lines contain `text` (or match a callable); return the last."""
        test = text if callable(text) else (lambda line: text in line)
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in lines if test(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(
                        t.is_alive() for t in self._threads)):
                    raise AssertionError("never saw %r in %s:\n%s\nstderr:\n%s" % (
                        text, stream, "\n".join(self.out[-40:]), "\n".join(self.err[-20:])))
                self._changed.wait(min(left, 0.5))

    def expect_event(self, event, name=None, timeout=WAIT, count=1):
        def test(line):
            try:
                record = json.loads(line)
            except ValueError:
                return False
            return record.get("event") == event and (name is None or record.get("name") == name)
        return json.loads(self.expect(test, timeout=timeout, count=count))

    def signal(self, signum):
        os.kill(self.pid, signum)

    def wait(self, timeout=WAIT):
        status = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout)
        return status

    @property
    def stdout(self):
        return "\n".join(self.out) + "\n"

    @property
    def stderr(self):
        return "\n".join(self.err) + "\n"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


@pytest.fixture
def background():
    """Start procwrap in the background; whatever is left is killed at the end."""
    started = []

    def start(*args, **kwargs):
        bg = Background(args, **kwargs)
        started.append(bg)
        return bg
    yield start
    for bg in started:
        bg.kill()


@pytest.fixture(scope="session")
def public_copy(tmp_path_factory):
    """procwrap.py and an interpreter an unprivileged user can reach (/root is 0700)."""
    import shutil
    import tempfile

    class Copy(object):
        directory = tempfile.mkdtemp(prefix="procwrap-public-")
        procwrap = os.path.join(directory, "procwrap.py")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PYTHON
    os.chmod(Copy.directory, 0o755)
    shutil.copy(PROCWRAP, Copy.procwrap)
    os.chmod(Copy.procwrap, 0o644)
    yield Copy
    shutil.rmtree(Copy.directory, ignore_errors=True)


def read_line(stream, until="", timeout=WAIT):
    """The first line of a server's output that contains `until`, waited for at
    most `timeout`; the rest of the stream is drained in the background, so a
    chatty server never blocks on a full pipe."""
    found = queue.Queue()

    def reader():
        for line in iter(stream.readline, ""):
            if found.empty() and until in line:
                found.put(line)
        found.put(None)
    thread = threading.Thread(target=reader)
    thread.daemon = True
    thread.start()
    try:
        line = found.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no line with %r within %s s" % (until, timeout))
    assert line is not None, "the stream ended without a line with %r" % until
    return line


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError):
        return False


def wait_until(predicate, timeout=WAIT, what="condition"):
    """Bounded wait for a state that no event announces (a pid disappearing)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@pytest.fixture(scope="session")
def test_user():
    """A real unprivileged user; .ci/run creates it, and so does this on a fresh machine."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.check_call(["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER])
        return pwd.getpwnam(TEST_USER)


def load_table(name):
    """Rows of a JSON table in test_fixtures/ (a list of objects)."""
    with open(fixture(name), encoding="utf-8") as stream:
        return json.load(stream)


def write_config(tmp_path, config, name="procwrap.json"):
    path = tmp_path / name
    if isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(json.dumps(config))
    return str(path)


def print_env(separator=" "):
    """argv of a child that prints the variables named after it, joined by
    `separator` ('<unset>' for one it does not have)."""
    return [PYTHON, "-c", "import os, sys; print(%r.join(os.environ.get(n, '<unset>') "
            "for n in sys.argv[1:]))" % separator]


#: A child that prints the variables named after it, space-separated.
PRINT_ENV = print_env()


def error_lines(stderr, only_errors=True):
    """procwrap's error lines without their prefix; never a traceback.  With
    `only_errors`, every line must be one."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    if only_errors:
        assert all(line.startswith("procwrap: error: ") for line in lines), stderr
    return [line[len("procwrap: error: "):] for line in lines
            if line.startswith("procwrap: error: ")]


def environ_of(pid):
    """A live process's environment, from /proc."""
    with open("/proc/%d/environ" % pid, "rb") as stream:
        return dict(item.decode().split("=", 1) for item in stream.read().split(b"\0") if item)


def cmdline_of(pid):
    """A live process's argv, NUL-separated, from /proc."""
    with open("/proc/%d/cmdline" % pid, "rb") as stream:
        return stream.read().decode()


#: Run what follows as PID 1 of a new PID namespace (we are root in the suite).
IN_PID_NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc"]


def self_signed_cert(directory, name="127.0.0.1"):
    """(certificate, key) paths of a fresh self-signed certificate for `name`
    (an IP address gets it as a subjectAltName too), made with openssl."""
    cert, key = os.path.join(str(directory), "cert.pem"), os.path.join(str(directory), "key.pem")
    extra = ["-addext", "subjectAltName=IP:%s" % name] if name[:1].isdigit() else []
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                           "1", "-subj", "/CN=%s" % name] + extra + ["-keyout", key, "-out", cert],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


@pytest.fixture
def server():
    """Start a test server and wait for its first line that contains `ready`
    (on stdout, or stderr with from_stderr); (the Popen, that line).  Every
    server started is killed and waited for at the end of the test.  For the
    servers the suite runs on loopback: Vault's stand-in, moto, an HTTPS
    endpoint, and what is coming (sshd, etcd, an API server)."""
    started = []

    def start(argv, ready="", from_stderr=False, **kwargs):
        streams = dict(stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if from_stderr:
            streams = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        streams.update(kwargs)
        process = subprocess.Popen(argv, universal_newlines=True, **streams)
        started.append(process)
        line = read_line(process.stderr if from_stderr else process.stdout, ready)
        return process, line
    yield start
    for process in started:
        process.kill()
        process.wait(WAIT)


def parent_of(pid):
    """A live process's parent pid, from /proc; None once it is gone."""
    try:
        with open("/proc/%s/stat" % pid) as stream:
            return int(stream.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid):
    """The pids whose parent is `pid`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if parent_of(int(name)) == pid:
                    found.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _kill_tree(process):
    """Kill a server and every process below it (sshd's sessions outlive their
    listener, re-parented to init, unless killed with it), then reap it."""
    parents = dict((int(name), parent_of(name)) for name in os.listdir("/proc")
                   if name.isdigit())
    tree = []
    level = [process.pid]
    while level:
        tree.extend(level)
        level = [pid for pid, parent in parents.items() if parent in level]
    for pid in reversed(tree):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    process.wait(WAIT)


def in_a_terminal(args, env=None):
    """(exit status, output) of `procwrap.py ARGS` with a pty as its stdout,
    the output as a terminal shows it (CRLF back to LF)."""
    import pty
    leader, follower = pty.openpty()
    child = subprocess.Popen([PYTHON, PROCWRAP] + list(args), stdout=follower,
                             stderr=subprocess.PIPE, env=env or clean_environ())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:         # EIO: the last writer is gone
            break
        if not chunk:
            break
        output += chunk
    status = child.wait(WAIT)
    os.close(leader)
    return status, output.decode("utf-8").replace("\r\n", "\n")


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class Sshd(object):
    """A private sshd on a free loopback port: its own host key, config and
    authorized key, never the system's.  The key is every user's (sshd reads
    AuthorizedKeysFile as the user logging in, so the directory is 0755: the
    unprivileged test user can log in too)."""

    def __init__(self, directory=None):
        import tempfile
        self.dir = str(directory) if directory else tempfile.mkdtemp(prefix="procwrap-sshd-")
        os.chmod(self.dir, 0o755)
        self.port = None
        self.process = None
        self.key = os.path.join(self.dir, "id_ed25519")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        for name in ("host_ed25519", "id_ed25519"):
            subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                                   os.path.join(self.dir, name)])
        with open(os.path.join(self.dir, "id_ed25519.pub")) as src, \
                open(os.path.join(self.dir, "authorized_keys"), "w") as dst:
            dst.write(src.read())

    def start(self):
        self.port = free_port()
        self.process = self.spawn("127.0.0.1", self.port)
        self.others = []

    def spawn(self, address, port, netns=None, setup=()):
        """One more sshd with these keys on address:port (inside a network
        namespace, with `netns`; after the shell commands of `setup` in a
        private mount namespace of its own); started when its pid file is
        written."""
        name = "%s-%d" % (netns or "host", port)
        config = os.path.join(self.dir, "sshd_config-" + name)
        pid_file = os.path.join(self.dir, "sshd-%s.pid" % name)
        with open(config, "w") as stream:
            stream.write("Port %d\nListenAddress %s\nHostKey %s\nPidFile %s\n"
                         "AuthorizedKeysFile %s\nPasswordAuthentication no\n"
                         "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                         "UsePAM yes\nStrictModes no\nLogLevel ERROR\nMaxStartups 100\n"
                         "MaxSessions 100\n"
                         % (port, address, os.path.join(self.dir, "host_ed25519"), pid_file,
                            os.path.join(self.dir, "authorized_keys")))
        prefix = ["ip", "netns", "exec", netns] if netns else []
        if setup:
            prefix += ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                       "; ".join(list(setup) + ['exec "$@"']), "sh"]
        process = subprocess.Popen(prefix + ["/usr/sbin/sshd", "-D", "-e", "-f", config],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   universal_newlines=True)

        def listening():
            assert process.poll() is None, process.stderr.read()
            return os.path.exists(pid_file)
        wait_until(listening, what="sshd listening on %s:%d" % (address, port))
        if netns:
            self.others.append(process)
        return process

    def host(self, user="root"):
        """user@127.0.0.1:PORT, as procwrap remote takes it."""
        return "%s@127.0.0.1:%d" % (user, self.port)

    def options(self):
        """procwrap remote's options that make ssh use this sshd's keys."""
        args = []
        for option in ("IdentityFile=" + self.key, "IdentitiesOnly=yes",
                       "UserKnownHostsFile=" + self.known_hosts, "StrictHostKeyChecking=no"):
            args += ["--ssh-option", option]
        return args + ["--python", PYTHON]

    def stop(self):
        import shutil
        for process in [self.process] + getattr(self, "others", []):
            if process is not None:
                _kill_tree(process)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """The suite's sshd (session-wide: key generation and start take a while).
    Outside CI a machine without openssh-server skips these tests, saying so."""
    import shutil
    missing = [what for what, ok in (
        ("/usr/sbin/sshd (apt-get install openssh-server)", os.path.exists("/usr/sbin/sshd")),
        ("ssh (apt-get install openssh-client)", shutil.which("ssh")),
        ("/run/sshd, sshd's privilege separation directory (mkdir -p /run/sshd)",
         os.path.isdir("/run/sshd"))) if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail("missing: " + ", ".join(missing))
        pytest.skip("missing: " + ", ".join(missing) + "; .ci/run installs them")
    server = Sshd()
    server.start()
    yield server
    server.stop()


class _Locked(object):
    """An sshd whose sessions see /tmp, /root and the test user's home
    read-only, and a sudo that wants the test user's password (given here):
    /etc/sudoers and /etc/shadow are temporary copies bind-mounted in its
    own mount namespace; the machine's files are never written."""

    def __init__(self, sshd, test_user):
        import binascii
        import tempfile
        self.password = "pw-" + binascii.hexlify(os.urandom(8)).decode()
        self.dir = tempfile.mkdtemp(prefix="procwrap-locked-")
        digest = subprocess.check_output(["openssl", "passwd", "-6", self.password],
                                         universal_newlines=True).strip()
        shadow, sudoers = os.path.join(self.dir, "shadow"), os.path.join(self.dir, "sudoers")
        with open("/etc/shadow") as stream:
            lines = [line.split(":") for line in stream.read().splitlines() if line]
        for fields in lines:
            if fields[0] == test_user.pw_name:
                fields[1] = digest
        with open(shadow, "w") as stream:
            stream.write("".join(":".join(fields) + "\n" for fields in lines))
        os.chmod(shadow, 0o640)
        with open(sudoers, "w") as stream:
            stream.write("Defaults lecture=never\nroot ALL=(ALL:ALL) ALL\n%s ALL=(ALL:ALL) ALL\n"
                         % test_user.pw_name)
        os.chmod(sudoers, 0o440)
        self.port = free_port()
        read_only = ["/tmp", "/root", test_user.pw_dir]
        setup = ["mount --bind %s /etc/shadow" % shadow, "mount --bind %s /etc/sudoers" % sudoers]
        for path in read_only:
            setup.append("mount --bind %s %s" % (path, path))
        setup.append("mount --bind %s %s" % (sshd.dir, sshd.dir))    # its pid file
        for path in read_only:
            setup.append("mount -o remount,bind,ro %s" % path)
        self.process = sshd.spawn("127.0.0.1", self.port, setup=setup)

    def host(self, user="root"):
        return "%s@127.0.0.1:%d" % (user, self.port)

    def stop(self):
        import shutil
        _kill_tree(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def locked_host(sshd, test_user):
    """See _Locked."""
    host = _Locked(sshd, test_user)
    yield host
    host.stop()


class _Hidden(tuple):
    """(bastion, hidden), and the link from here to the bastion, to cut."""

    def __new__(cls, bastion, hidden, link):
        self = tuple.__new__(cls, (bastion, hidden))
        self.link = link
        return self

    def cut(self):
        """Take the link down: packets are lost, no FIN, no RST (a partition)."""
        subprocess.check_call(["ip", "link", "set", self.link, "down"])

    def mend(self):
        subprocess.check_call(["ip", "link", "set", self.link, "up"])


@pytest.fixture(scope="session")
def hidden_host(sshd):
    """See hidden_network."""
    with hidden_network(sshd) as hidden:
        yield hidden


@contextlib.contextmanager
def hidden_network(sshd):
    """(bastion, hidden): two more sshds, each in its own network namespace.
    The host reaches the bastion's namespace over a veth pair; only the
    bastion's namespace reaches the hidden one (a second veth pair, no route
    from here), as a host behind a bastion.  Private test subnets, names
    unique to this run, everything removed at the end."""
    import binascii
    tag = binascii.hexlify(os.urandom(3)).decode()
    a, b = "pwa" + tag, "pwb" + tag
    net = 200 + int(tag[:2], 16) % 50
    commands = [
        ["ip", "netns", "add", a], ["ip", "netns", "add", b],
        ["ip", "link", "add", "pwh" + tag, "type", "veth", "peer", "name", "pwa" + tag],
        ["ip", "link", "set", "pwa" + tag, "netns", a],
        ["ip", "addr", "add", "10.%d.1.1/30" % net, "dev", "pwh" + tag],
        ["ip", "link", "set", "pwh" + tag, "up"],
        ["ip", "netns", "exec", a, "ip", "addr", "add", "10.%d.1.2/30" % net, "dev",
         "pwa" + tag],
        ["ip", "netns", "exec", a, "ip", "link", "set", "pwa" + tag, "up"],
        ["ip", "netns", "exec", a, "ip", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", a, "ip", "link", "add", "pwx" + tag, "type", "veth", "peer",
         "name", "pwy" + tag],
        ["ip", "netns", "exec", a, "ip", "link", "set", "pwy" + tag, "netns", b],
        ["ip", "netns", "exec", a, "ip", "addr", "add", "10.%d.2.1/30" % net, "dev",
         "pwx" + tag],
        ["ip", "netns", "exec", a, "ip", "link", "set", "pwx" + tag, "up"],
        ["ip", "netns", "exec", b, "ip", "addr", "add", "10.%d.2.2/30" % net, "dev",
         "pwy" + tag],
        ["ip", "netns", "exec", b, "ip", "link", "set", "pwy" + tag, "up"],
        ["ip", "netns", "exec", b, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for command in commands:
            subprocess.check_call(command)
        sshd.spawn("10.%d.1.2" % net, 22, a)
        sshd.spawn("10.%d.2.2" % net, 22, b)
        yield _Hidden("root@10.%d.1.2" % net, "root@10.%d.2.2" % net, "pwh" + tag)
    finally:
        for process in sshd.others:
            _kill_tree(process)
        del sshd.others[:]
        subprocess.call(["ip", "link", "del", "pwh" + tag], stderr=subprocess.DEVNULL)
        for name in (a, b):
            subprocess.call(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)


class Etcd(object):
    """A private etcd on free loopback ports, its data in a temporary
    directory; never the system's."""

    def __init__(self, secure=False):
        """secure: TLS with client certificates (a self-signed one, its own CA),
        and auth on: user root, password self.password."""
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="procwrap-etcd-")
        self.port, peer = free_port(), free_port()
        self.url = "%s://127.0.0.1:%d" % ("https" if secure else "http", self.port)
        self.cert = self.key = None
        self.token = None
        tls = []
        if secure:
            # The server's certificate; and the client's, with no CommonName:
            # the gateway refuses a client certificate that has one when auth
            # is on (it would not be used as a user name, SPECS.md 8.1).
            self.server_cert, server_key = self_signed_cert(self.dir)
            self.cert = os.path.join(self.dir, "client.pem")
            self.key = os.path.join(self.dir, "client-key.pem")
            subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                   "-days", "1", "-subj", "/O=procwrap test client",
                                   "-keyout", self.key, "-out", self.cert],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            trusted = os.path.join(self.dir, "trusted.pem")     # etcd's gateway is a client too
            with open(trusted, "w") as bundle:
                for path in (self.cert, self.server_cert):
                    with open(path) as part:
                        bundle.write(part.read())
            tls = ["--cert-file", self.server_cert, "--key-file", server_key,
                   "--client-cert-auth", "--trusted-ca-file", trusted]
        self.process = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-cluster", "t=http://127.0.0.1:%d" % peer] + tls,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(self.healthy, what="etcd to answer")
            if secure:
                self.password = "etcd-pw-" + os.urandom(4).hex()
                self.call("/auth/user/add", {"name": "root", "password": self.password})
                self.call("/auth/role/add", {"name": "root"})
                self.call("/auth/user/grant", {"user": "root", "role": "root"})
                self.call("/auth/enable", {})
                self.token = self.call("/auth/authenticate", {
                    "name": "root", "password": self.password})["token"]
        except BaseException:
            self.stop()         # a setup that failed leaves no etcd behind
            raise

    def _open(self, request, timeout):
        import ssl
        import urllib.request
        context = None
        if self.cert:
            context = ssl.create_default_context(cafile=self.server_cert)
            context.load_cert_chain(self.cert, self.key)
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def healthy(self):
        assert self.process.poll() is None, "etcd exited"
        try:
            with self._open(self.url + "/health", 1) as answer:
                return b"true" in answer.read()
        except OSError:
            return False

    def call(self, path, body):
        """POST JSON to the v3 gateway; the answer."""
        import urllib.request
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        request = urllib.request.Request(self.url + "/v3" + path, data=json.dumps(body).encode(),
                                         headers=headers)
        with self._open(request, 5) as answer:
            return json.loads(answer.read().decode())

    def keys(self, prefix):
        """[(key, value)] under prefix, oldest first."""
        import base64
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        answer = self.call("/kv/range", {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode(),
            "sort_target": "CREATE", "sort_order": "ASCEND"})
        return [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv["value"]).decode())
                for kv in answer.get("kvs", ())]

    def stop(self):
        import shutil
        _kill_tree(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd():
    """The suite's etcd.  Outside CI a machine without it skips, saying so."""
    import shutil
    if not shutil.which("etcd"):
        if os.environ.get("CI"):
            pytest.fail("etcd is missing; .ci/run installs etcd-server")
        pytest.skip("etcd is not installed (apt-get install etcd-server); .ci/run installs it")
    server = Etcd()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secure_etcd(etcd):
    """An etcd with TLS, client certificates and auth (user root)."""
    server = Etcd(secure=True)
    yield server
    server.stop()


class EtcdCluster(object):
    """Three etcd members on loopback, a private cluster: .urls, .kill(i)."""

    def __init__(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="procwrap-etcd3-")
        clients = [free_port() for _ in range(3)]
        peers = [free_port() for _ in range(3)]
        self.urls = ["http://127.0.0.1:%d" % port for port in clients]
        cluster = ",".join("m%d=http://127.0.0.1:%d" % (i, port) for i, port in enumerate(peers))
        self.processes = [subprocess.Popen(
            ["etcd", "--name", "m%d" % i, "--data-dir", os.path.join(self.dir, "m%d" % i),
             "--listen-client-urls", self.urls[i], "--advertise-client-urls", self.urls[i],
             "--listen-peer-urls", "http://127.0.0.1:%d" % peers[i],
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peers[i],
             "--initial-cluster", cluster, "--initial-cluster-state", "new"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
        try:
            for url in self.urls:
                wait_until(lambda url=url: self._healthy(url), what="etcd member %s" % url)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _healthy(url):
        import urllib.request
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                return b"true" in answer.read()
        except OSError:
            return False

    def kill(self, index):
        self.processes[index].kill()
        self.processes[index].wait()

    def stop(self):
        import shutil
        for process in self.processes:
            _kill_tree(process)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def etcd_cluster(etcd):
    """A fresh 3-member cluster (a test kills members)."""
    cluster = EtcdCluster()
    yield cluster
    cluster.stop()


class Postgres(object):
    """A PostgreSQL of Debian's package, started for the tests as the test
    user in a temporary directory, on a free loopback port, with a password
    (scram) for TCP; stopped at the end."""

    def __init__(self, user):
        import glob
        import tempfile
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not binaries:
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = os.path.dirname(binaries[-1])
        self.dir = tempfile.mkdtemp(prefix="procwrap-pg-")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.user = user
        self.port = free_port()
        self.password = "pg-" + os.urandom(6).hex()
        self.data = os.path.join(self.dir, "data")
        with open(os.path.join(self.dir, "pw"), "w") as stream:
            stream.write(self.password + "\n")
        os.chown(os.path.join(self.dir, "pw"), user.pw_uid, user.pw_gid)
        self.run("initdb", "-D", self.data, "-U", "probe", "--auth=scram-sha-256",
                 "--pwfile=" + os.path.join(self.dir, "pw"))
        self.run("pg_ctl", "-D", self.data, "-w", "-t", "60", "-l",
                 os.path.join(self.dir, "log"), "-o", "-p %d -k %s -c listen_addresses=127.0.0.1"
                 % (self.port, self.dir), "start")
        self.dsn = "postgresql://probe:%s@127.0.0.1:%d/postgres" % (self.password, self.port)

    def run(self, program, *args):
        subprocess.run(["setpriv", "--reuid", str(self.user.pw_uid), "--regid",
                        str(self.user.pw_gid), "--clear-groups",
                        os.path.join(self.bin, program)] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=WAIT,
                       cwd=self.dir)

    def stop(self):
        try:
            self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(test_user):
    server = Postgres(test_user)
    yield server
    server.stop()


def stop_server(process, group=False):
    """A test's server: SIGTERM (to its process group, with group), then
    SIGKILL if it is still there after WAIT seconds."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        if group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            pass


class RabbitMQ(object):
    """A RabbitMQ of Debian's package (rabbitmq-server), started for the tests
    as root on free loopback ports, with its node name, database, logs, home
    and config in a temporary directory; its one user `probe` and vhosts `/`
    and `app/prod` come from a definitions file (no guest).  Its log goes to
    `self.log`; epmd, which Erlang starts, is stopped again if it was not
    running before."""
    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    PASSWORD = "p@ss:w/rd %1"

    def __init__(self):
        import base64
        import hashlib
        import tempfile
        if not os.path.exists(self.SERVER):
            pytest.skip("RabbitMQ is not installed (apt-get install rabbitmq-server)")
        self.dir = tempfile.mkdtemp(prefix="procwrap-rabbitmq-")
        self.port = free_port()
        self.epmd_was_running = subprocess.run(
            ["epmd", "-names"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=WAIT).returncode == 0
        salt = os.urandom(4)
        hashed = base64.b64encode(salt + hashlib.sha256(salt + self.PASSWORD.encode()).digest())
        vhosts = ("/", "app/prod")
        definitions = {
            "users": [{"name": "probe", "password_hash": hashed.decode(), "tags": "",
                       "hashing_algorithm": "rabbit_password_hashing_sha256"}],
            "vhosts": [{"name": name} for name in vhosts],
            "permissions": [{"user": "probe", "vhost": name, "configure": ".*", "write": ".*",
                             "read": ".*"} for name in vhosts]}
        path = functools.partial(os.path.join, self.dir)
        with open(path("definitions.json"), "w") as stream:
            json.dump(definitions, stream)
        with open(path("rabbitmq.conf"), "w") as stream:
            stream.write("listeners.tcp.default = 127.0.0.1:%d\nload_definitions = %s\n"
                         % (self.port, path("definitions.json")))
        os.mkdir(path("home"))
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": path("home"),
               "RABBITMQ_NODENAME": "procwrap-test-%d@localhost" % self.port,
               "RABBITMQ_MNESIA_BASE": path("mnesia"), "RABBITMQ_LOG_BASE": path("logs"),
               "RABBITMQ_LOGS": "-", "RABBITMQ_CONFIG_FILE": path("rabbitmq.conf"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": path("enabled_plugins"),
               "RABBITMQ_DIST_PORT": str(free_port()), "ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.server = Background(None, command=[self.SERVER], env=env, cwd=self.dir,
                                 preexec=os.setsid)     # its own group: beam, its children
        try:
            self.server.expect("Server startup complete", timeout=WAIT * 4)
        except AssertionError:
            self.stop()
            raise

    @property
    def log(self):
        """The server's log lines so far (RABBITMQ_LOGS=-: its stdout)."""
        return self.server.out

    def url(self, password=None, vhost="app%2Fprod"):
        """An amqp:// url for `probe` (its password, quoted, unless given)."""
        from urllib.parse import quote
        return "amqp://probe:%s@localhost:%d/%s" % (
            quote(self.PASSWORD if password is None else password, safe=""), self.port, vhost)

    def stop(self):
        import shutil
        stop_server(self.server.proc, group=True)
        if not self.epmd_was_running:
            subprocess.run(["epmd", "-kill"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=WAIT)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq():
    server = RabbitMQ()
    yield server
    server.stop()


class MariaDB(object):
    """A MariaDB of Debian's package (mariadb-server), started for the tests
    as the test user in a temporary directory, on a free loopback port; its
    user `probe` has a password; stopped at the end."""

    def __init__(self, user):
        import tempfile
        if not os.path.exists("/usr/sbin/mariadbd"):
            pytest.skip("MariaDB is not installed (apt-get install mariadb-server)")
        self.dir = tempfile.mkdtemp(prefix="procwrap-mariadb-")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.user, self.port = user, free_port()
        self.password = "my-" + os.urandom(6).hex()
        self.socket = os.path.join(self.dir, "sock")
        as_user = ["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid),
                   "--clear-groups"]
        data = os.path.join(self.dir, "data")
        subprocess.run(as_user + ["mariadb-install-db", "--no-defaults", "--datadir=" + data,
                                  "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=WAIT, cwd=self.dir)
        self.server = Background(None, command=as_user + [
            "/usr/sbin/mariadbd", "--no-defaults", "--datadir=" + data, "--socket=" + self.socket,
            "--port=%d" % self.port, "--bind-address=127.0.0.1", "--skip-log-bin",
            "--pid-file=" + os.path.join(self.dir, "pid")], cwd=self.dir)
        try:
            self.server.expect("ready for connections", stream="err")     # its log
            self.sql("CREATE USER 'probe'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO "
                     "'probe'@'%%';" % self.password)
        except BaseException:
            self.stop()
            raise
        self.dsn = "mysql://probe:%s@127.0.0.1:%d/mysql" % (self.password, self.port)

    def sql(self, text):
        done = subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-u", "root", "-e",
                               text], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=WAIT)
        assert done.returncode == 0, "MariaDB refused %r: %s" % (text, done.stderr)

    def stop(self):
        import shutil
        stop_server(self.server.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(test_user):
    server = MariaDB(test_user)
    yield server
    server.stop()
