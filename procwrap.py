#!/usr/bin/env python3
"""procwrap: run programs and keep them honest.  One file, standard library only.

Wrap one command:

    procwrap [OPTIONS] [--] CMD [ARGS...]

    Runs CMD in its own session, forwards signals to its process group and
    exits with its status.  Retries with backoff, time limits, run-as user,
    dotenv files.  Output passes through untouched unless --log-format asks
    for one record per line.

Supervise many (a container's PID 1):

    procwrap -c procwrap.json|.toml|.yaml [OPTIONS]
    procwrap check -c FILE            validate a config without running it
    procwrap locks NAME --etcd URL    who holds a --lock's slots, and who waits

Run on other hosts over ssh (nothing installed there but Python 3.6+):

    procwrap remote [OPTIONS] [user@]HOST[:PORT][,HOST...] [--] CMD [ARGS...]

Install without pip (module, bytecode and a launcher):

    python3 procwrap.py install [PREFIX]

    Runs the `init` entries one after another, then starts the `processes`
    together and keeps them alive by their restartPolicy and backoff.  Every
    line they print becomes one JSON, logfmt or text record on stdout.

Exit status:

    wrap mode            the child's status; 128+N when it died by signal N
    supervisor mode      0 after a clean shutdown (TERM/INT) or when every
                         process finished successfully; an essential
                         process's status when its end ended the run; a failed
                         init entry's status; otherwise the status of the last
                         process that finished with a failure
    2                    usage or config error (one line on stderr each)
    69                   a secret's location could not be fetched or read;
                         procwrap ctl found no supervisor on its socket
    70                   a bug in procwrap (a traceback follows; please report)
    124                  --timeout expired (wrap mode, last attempt)
    126                  the command could not be executed (permission,
                         not an executable, working directory, user switch)
    127                  the command was not found (remote: no Python there)
    255                  remote: a host could not be reached (ssh's reason said)

Secrets: NAME_FOR_PROCWRAP_TO_RESOLVE=LOCATION becomes NAME=<value> for the
child, LOCATION being [PROVIDER:]ADDRESS[!FORMAT][|JP:PATH] with providers
FILE, ENV, PLAIN, CONFIG, AWS_SM, AWS_S3, AWS_SSM and VAULT; values never
appear in procwrap's own output.  Embedded: procwrap.resolve_config(), and
procwrap.connect(HOST) to run commands and call functions on another host.

Environment: every option has a twin PROCWRAP_<OPTION> (PROCWRAP_TIMEOUT=30);
the command line wins.  PROCWRAP_CONFIG holds a config path, or the JSON
config itself when it starts with "{".  Variables named PROCWRAP_* are never
passed to children.

Contents: Part I runs anywhere; it is what `procwrap remote` ships to a
host that has only Python: Compat, Constants & messages, Errors, Pure
helpers, Files, Event loop & streams, Children, Remote agent.  Part II is
local: Logging, Processes, Wrap mode, HTTP client & leases, Fleet, Secrets,
Probes, Health, Reporting & embedding, Remote client, Config, Supervisor,
Control surface, CLI.  Each section uses only those above it.
"""

__version__ = "0.1.0"
#: The public API: what is here is documented and kept; every other function
#: and class has a leading underscore and may change in any release (the
#: UPPER_CASE constants are tunables and messages, named as STYLE.md says).
__all__ = ["main", "resolve_config", "connect", "managed_call", "StatusUpdater", "Secret",
           "ProcwrapError", "UsageError", "ConfigError", "UnavailableError", "SecretError",
           "RemoteError", "__version__"]

import errno
import heapq
import os
import re
import selectors
import signal
import sys
import time


# #############################################################################
# Part I: runs anywhere
# What the SSH bootstrap ships and compiles on the other end: nothing here
# uses Part II.  Standard library only, nothing Linux-only without a fallback.
# #############################################################################


# =============================================================================
# Compat
# Shims for CPython 3.6-3.13 and for Linux-only abilities.  Each names the
# version that lets it go.  Nothing outside this section tests versions.
# =============================================================================


def _set_wakeup_fd(fd):
    """signal.set_wakeup_fd without the 'buffer full' warning on a signal storm."""
    try:
        return signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except TypeError:  # py<3.7: drop with 3.6 (no warn_on_full_buffer)
        return signal.set_wakeup_fd(fd)


if hasattr(signal, "valid_signals"):
    _ALL_SIGNALS = signal.valid_signals()
else:  # py<3.8: drop with 3.7
    _ALL_SIGNALS = range(1, signal.NSIG)

try:
    # The C function: signal.pthread_sigmask wraps each returned signal in an
    # enum, 64 objects per call, which is 0.2 ms a spawn, 0.1 s for 500.
    from _signal import pthread_sigmask as _sigmask
except ImportError:  # not CPython
    _sigmask = signal.pthread_sigmask

#: fcntl(F_SETPIPE_SZ) grows a pipe so a chatty child wakes us less often.
#: The constant is in the fcntl module from 3.10 (py<3.10: drop with 3.9).
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = None


def _load_libc():
    """The C library through ctypes, loaded once; False off Linux or without ctypes."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                _libc = ctypes.CDLL(None, use_errno=True)
            except (ImportError, OSError):
                pass
    return _libc


def _prctl(option, value):
    """prctl(2); False where the call or ctypes is missing."""
    return bool(_load_libc()) and _libc.prctl(option, value, 0, 0, 0) == 0


def _memfd_create(name):
    """An anonymous memory file that exec keeps open (no MFD_CLOEXEC); OSError
    where there is none (os.memfd_create is 3.8+: ctypes before)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name, 0)
    libc = _load_libc()         # py<3.8: drop with 3.7
    fd = libc.memfd_create(name.encode(), 0) if libc else -1
    if fd < 0:
        raise OSError(errno.ENOSYS, "no memfd_create")
    return fd


#: The .pyc header after the magic number: flags (3.7+, PEP 552), mtime and
#: source size, all zero (nothing checks them when a .pyc is run directly).
_PYC_HEADER_REST = b"\0" * (12 if sys.version_info >= (3, 7) else 8)   # py<3.7: drop with 3.6


def _trim_memory():
    """Hand free heap back to the kernel (glibc malloc_trim).

    Compiling procwrap.py as a script leaves megabytes of freed parser memory
    in the heap; a supervisor that idles for weeks should not keep it.
    """
    libc = _load_libc()
    if libc and hasattr(libc, "malloc_trim"):
        import gc
        gc.collect()
        libc.malloc_trim(0)


def _set_pipe_size(fd):
    """Best effort: a bigger pipe buffer means fewer wake-ups (Linux only)."""
    try:
        import fcntl
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, OSError):
        pass  # the 64 KiB default works, only slower


class _Pattern(object):
    """A regular expression compiled on first use.

    procwrap has a score of them; compiling all at import costs about 5 ms,
    which wrapping /bin/true would pay for nothing.
    """
    __slots__ = ("source", "flags", "_compiled")

    def __init__(self, source, flags=0):
        self.source = source        #: the pattern text
        self.flags = flags          #: re flags
        self._compiled = None       #: the re.Pattern, once used

    def __getattr__(self, name):
        """Compile on first use, then behave as the compiled pattern."""
        if self._compiled is None:
            self._compiled = re.compile(self.source, self.flags)
        return getattr(self._compiled, name)


# =============================================================================
# Constants & messages
# Exit statuses, tunables and every message a user can see.  Tests assert on
# the *_MSG templates, so a wording change is one edit here.
# =============================================================================


EX_OK = 0
EX_USAGE = 2
EX_UNAVAILABLE = 69   #: a secret could not be fetched or read (sysexits' EX_UNAVAILABLE)
EX_SOFTWARE = 70      #: our bug, so it is not mistaken for a child's 1
EX_TIMEOUT = 124      #: as GNU timeout(1)
#: A reported run, as proc_wrapper's (a drop-in's scripts test them): the
#: API server's concurrency limit refused the start, or the server stopped
#: the execution (409); the server refused the key (403) and offline runs
#: are prevented.  Any other unreachable server: EX_UNAVAILABLE.
EX_TEMPFAIL = 75
EX_NOPERM = 77
#: What the final update to the API server says of a run, by how it ended.
API_SUCCEEDED, API_FAILED, API_TIMED_OUT, API_ABORTED = (
    "SUCCEEDED", "FAILED", "TERMINATED_AFTER_TIME_OUT", "ABORTED")
EX_NOEXEC = 126       #: as a shell: found but could not be executed
EX_NOTFOUND = 127     #: as a shell: command not found

#: Bytes asked of a pipe per read.  64 KiB is one default pipe buffer; a
#: flooding child gets one read per loop pass, like every other pipe, so it
#: cannot starve the rest.
READ_SIZE = 65536

#: Lines longer than this are split into pieces marked as partial, so one
#: child without newlines cannot grow procwrap's memory without bound.
MAX_LINE_BYTES = 65536

#: Signals procwrap never takes over.  KILL and STOP cannot be caught, CHLD
#: is how the loop learns of exits, and a handler for the synchronous fault
#: signals would hang procwrap on a real fault (the faulting instruction runs
#: again after a Python handler returns): they keep their default action.
#: Every other signal is forwarded, as dumb-init does (see the README).
UNFORWARDED_SIGNALS = ("SIGKILL", "SIGSTOP", "SIGCHLD", "SIGSEGV", "SIGBUS", "SIGFPE",
                       "SIGILL")
#: Requests to stop: the supervisor shuts down; wrap mode stops the child
#: (TERM: the stop signal, the grace, SIGKILL) and does not retry.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT")
#: Terminal job control: the child's group is stopped with SIGSTOP and so is
#: procwrap, until CONT (dumb-init's rule, so a child that handles TSTP stops too).
JOB_CONTROL_SIGNALS = ("SIGTSTP", "SIGTTIN", "SIGTTOU")

#: Supervisor defaults, modelled on Kubernetes' CrashLoopBackOff but faster to
#: start: the kubelet waits 10 s doubling to 300 s and forgets after 2 x 300 s
#: (the ReduceDefaultCrashLoopBackOffDecay gate starts at 1 s, caps at 60 s).
BACKOFF_INITIAL = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 120.0   #: 2 x max, as client-go's hasExpired
STOP_TIMEOUT = 10.0           #: as docker stop
PRIORITY_DEFAULT = 999        #: where a process without a priority starts (supervisord's)
FINISH_TIMEOUT = 10.0         #: a finish command's, and the finish list's, time to run
START_RETRIES = 3             #: with startSeconds, failed starts before giving up (supervisord's)
REPLICAS_MAX = 1000           #: copies of one entry (replicas)
MEMORY_CHECK = 1.0            #: seconds between looks at the memoryLimits' groups
PROMMERGE_TIMEOUT = 5.0       #: GET /prommerge waits this long for each promTarget
PROMMERGE_MAX_BYTES = 16 << 20  #: a promTarget's answer, at most
EVENT_MESSAGE_MAX = 4096      #: characters of a message in an --events-udp datagram
#: --preemption-url gce: the GCE metadata server's preemption flag (SPECS.md 12.1)
PREEMPTION_URL_GCE = "http://metadata.google.internal/computeMetadata/v1/instance/preempted"
WATCH_HANG = 300              #: seconds a hanging GET or a watch request may last, then again
WATCH_PACE = 30.0             #: the longest pause between requests a server did not hold
DRAIN_TIMEOUT = 5.0           #: the --drain-url POST's time limit
#: the service account's token, CA and namespace in every pod (PROCWRAP_SERVICE_ACCOUNT_DIR)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
PROCFILE_PORT = 5000          #: PORT of a Procfile's first process (foreman's and honcho's)
PROCFILE_STOP_TIMEOUT = 5.0   #: their grace before SIGKILL
HOOK_TIMEOUT = 30.0           #: a lifecycle hook's default time limit (Kubernetes has none)
TAIL_BYTES = 65536            #: recent output kept per process for `procwrap ctl tail`
LOG_FILE_MAX_BYTES = 50 << 20  #: a process's log file rotates past this (supervisord's 50MB)
LOG_FILE_BACKUPS = 10         #: rotated files kept (supervisord's)
#: Seconds a full disk may hold up procwrap's records (and, through their
#: pipes, its children's output) before records are dropped and counted.
LOG_STALL = 30.0
OUTPUT_TAIL = 1024            #: the end of a failing exec probe's or hook's output kept
#: Reads of a short command's output once it has exited: 16 of READ_SIZE
#: take all a pipe can hold (1 MiB with _PIPE_SIZE), no more.
PIPE_READS_AT_EXIT = 16
#: The largest datagram read: a UDP payload's limit, so none is cut short.
DATAGRAM_MAX = 65536
#: A status line from a child (sd_notify STATUS=, the status socket) is cut
#: here: it goes into a record, and any local process may send one.
STATUS_TEXT_MAX = 200
#: Names tried for a notify socket: its random part collides with one already
#: bound (EADDRINUSE) only by chance; a few tries make that vanishingly rare.
NOTIFY_NAME_TRIES = 8

#: The first line of a dotenv --env-output-file: it lets a later procwrap
#: recognise a file left behind by one that was killed, and replace it.
ENV_OUTPUT_MARKER = b"# written by procwrap"
#: The readiness file's content starts so (then the pid), for the same reason.
READINESS_MARKER = b"procwrap ready"

#: Limits on what users give us, so that no input can crash, hang or
#: exhaust procwrap.  Ten years is longer than any sane timeout and fits the
#: loop's clock with room to spare.
MAX_SECONDS = 10 * 365 * 86400.0
#: The longest a select() waits in one go: epoll takes at most 2**31-1 ms
#: (24.8 days), so a timer further out is reached in daily steps.
MAX_SELECT = 86400.0
#: A config, env file or FILE: document larger than this is refused (a
#: /dev/zero given by mistake must not fill memory).
MAX_FILE_BYTES = 16 << 20
#: Nesting and node budgets of a parsed config or document: a 400-byte YAML
#: alias bomb expands to billions of nodes, and deep nesting overflows the
#: recursion of anything that walks it.
MAX_NESTING = 64
MAX_NODES = 200000

#: Wrap-mode retry defaults.
RETRY_DELAY = 1.0
RETRY_JITTER = 0.1            #: each delay shrinks by up to 10 %

#: Secrets.  A variable NAME<suffix>=LOCATION in procwrap's environment
#: becomes NAME=<value> in the child's; cloudreactor proc_wrapper's suffix
#: works too, so its users can switch without renaming.
RESOLVE_SUFFIX = "_FOR_PROCWRAP_TO_RESOLVE"
PROC_WRAPPER_SUFFIX = "_FOR_PROC_WRAPPER_TO_RESOLVE"
CONFIG_RESOLVE_SUFFIX = "__to_resolve"  #: resolve_config(): KEY__to_resolve -> KEY
RESOLVE_DEPTH = 3             #: a value that is itself a location is followed this often
CONFIG_RESOLVE_DEPTH = 5      #: resolve_config() looks this many dicts deep
REDACTED = "[secret]"
#: Shorter values are not blanked out of procwrap's own messages: '1' or
#: 'no' would mangle every record, and say nothing useful about a secret.
REDACT_MIN_LENGTH = 4
#: Seconds one HTTP request (Vault, an API server, etcd) may take: the worker
#: runs one at a time, so a hung server must not hold the others up longer.
HTTP_CLIENT_TIMEOUT = 10.0
#: Tries of a request a server says to retry (412, 429, 5xx): three is what
#: Vault's own client does, and keeps a dead server's cost near 30 s.
HTTP_CLIENT_ATTEMPTS = 3
#: Longest Retry-After honoured between tries; a longer one fails the request
#: now, and the caller's own schedule (a renewal's retry) takes over.
HTTP_RETRY_AFTER_MAX = 5.0
#: Renew a lease or token when this much of its TTL has passed (Vault Agent's rule).
LEASE_RENEW_AT = 2.0 / 3.0
LEASE_RETRY_MAX = 30.0        #: longest wait between failed renewals
VAULT_RENEW_POLICIES = ("stop", "continue")

LOG_FORMATS = ("json", "logfmt", "text", "none")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
#: What a dependent waits for (Docker Compose's service_started,
#: service_healthy and service_completed_successfully).
DEPENDENCY_CONDITIONS = ("Ready", "Started", "Succeeded")

ERROR_MSG = "procwrap: error: %s"
WARNING_MSG = "procwrap: warning: %s"
UNKNOWN_VARIABLE_MSG = "%s: not a procwrap variable, so it is ignored%s"
INTERNAL_ERROR_MSG = ("procwrap: internal error (a bug in procwrap %s; please "
                      "report it with the traceback above)")
UNKNOWN_OPTION_MSG = "%s: unknown option%s; see procwrap --help"
DID_YOU_MEAN_MSG = "; did you mean %s?"
NEEDS_VALUE_MSG = "%s: expects a value (%s)"
BAD_VALUE_MSG = "%s: %s, got %r"
NO_COMMAND_MSG = ("no command and no config; give a command after '--' "
                  "(wrap mode) or -c FILE (supervisor mode); see --help")
MODE_OPTION_MSG = "%s: applies to %s mode only; remove it or %s"
MISSING_LIBRARY_MSG = "%s: needs the Python package '%s' (%s); pip install %s"
UNKNOWN_USER_MSG = "%s: no such user %r; create it or fix the name"
UNKNOWN_GROUP_MSG = "%s: no such group %r; create it or fix the name"
NEED_ROOT_MSG = ("running as another user needs root (procwrap runs as "
                 "uid %d); run procwrap as root or drop the setting")
NOT_A_DIR_MSG = "no such directory %r; create it or fix the path"
NOT_FOUND_MSG = "%s: command not found: %r"
CANNOT_RUN_MSG = "%s: cannot %s %r: %s"
DOTENV_ERROR_MSG = ("cannot parse this line; write NAME=value, quote values with spaces or "
                    "'#', and close every quote")
#: An embedding program ran procwrap's loop off the main thread: signal
#: handlers and the wakeup fd belong to the main thread (CPython's rule).
MAIN_THREAD_MSG = ("procwrap runs its loop with signal handlers, which only the main thread "
                   "may set; call it from the main thread")
TOO_LONG_MSG = "expected at most %d seconds (10 years), got %r"
NUL_MSG = ("holds a NUL byte, which no argument, path or variable can; remove it "
           "(a \\u0000 in the config?)")
UNENCODABLE_MSG = ("holds a character the system cannot take in an argument, path or "
                   "variable (a lone \\ud800-\\udfff escape?); fix the text")

STARTED_MSG = "%s started (pid %d)"
EXITED_MSG = "%s %s"
RESTARTING_MSG = "%s will restart in %.1f s (restart %d)"
GIVING_UP_MSG = "%s: giving up after %s"
RETRYING_MSG = "attempt %d of %d %s; retrying in %.1f s"
TIMEOUT_MSG = "%s: timed out after %s s; stopping it"
STOPPING_MSG = "%s: stopping with %s (pid %d)"
KILLING_MSG = "%s: still running %s s after %s; sending SIGKILL to its group"
SIGNAL_MSG = "received %s"
SHUTDOWN_MSG = "shutting down (%s)"
SECOND_SIGNAL_MSG = ("received %s again while stopping; waiting out the grace "
                     "period (--kill-on-second-signal kills at once)")
ORPHAN_MSG = "reaped orphan pid %d (%s)"
UNRESOLVED_MSG = "%s: cannot resolve %s: %s"
SKIPPED_SECRET_MSG = "%s: left out (--allow-unresolved): %s"
RESOLVED_MSG = "resolved %s from %s (%s)"
LOG_SECRETS_MSG = ("--log-secrets: resolved secret values will be written to this log; "
                   "use it only to debug, never in production")
CREDENTIALS_MSG = ("not passing %s to children: procwrap used them to fetch secrets; "
                   "list them by name in env.pass (or --env-pass) to pass them")
SECRET_IN_ARGV_MSG = ("$(%s) would put a resolved secret on the command line, where "
                      "/proc/PID/cmdline shows it to every user; let the program read "
                      "$%s from its environment")
VAULT_RENEWED_MSG = "vault: renewed %s for %d s"
VAULT_RENEW_FAILED_MSG = "vault: cannot renew %s: %s; retrying in %.0f s"
VAULT_EXPIRED_MSG = "vault: %s expired and could not be renewed (%s)"
LOG_WAITING_MSG = "cannot write records: %s; waiting for room (and so are the children)"
LOG_RESUMED_MSG = "records flow again after %s s"
LOG_DROPPING_MSG = ("cannot write records: %s for %d s; dropping them, counted, until "
                    "writes work again")
LOG_LOST_MSG = "%s lost: %s"
LOG_BROKEN_MSG = "cannot write records: %s; the ones that follow are lost (counted)"
NO_SUBREAPER_MSG = ("cannot become child subreaper (needs Linux >= 3.4); "
                    "orphaned grandchildren will not be reaped by procwrap")


HTTP_MAX_REQUEST = 8192         #: bytes of request head; more is 431 and close
#: Connections the kernel queues before we accept(): probes come in bursts
#: (a kubelet, a load balancer, a dashboard), and the loop accepts 64 a turn.
HTTP_BACKLOG = 128
#: A ctl request is one JSON line, short when it comes from procwrap ctl; one
#: over this is not a ctl client, and is cut off before it fills memory.
CTL_MAX_REQUEST = 1 << 20
#: ctl clients are people and scripts, one at a time: a small queue.
CTL_BACKLOG = 16
#: Answers queued for a `tail -f` that does not read them: past this the
#: follower is let go, rather than procwrap holding a child's output for it.
CTL_FOLLOW_BACKLOG = 1 << 20
CTL_WAIT = 60.0                #: ctl start/restart wait this long for a start (stop: + grace)
HTTP_IDLE_TIMEOUT = 10.0        #: seconds a connection may sit without a whole request
HTTP_MAX_CONNECTIONS = 256      #: then the one idle longest makes room for a newcomer
HTTP_WAIT_DEFAULT = 30.0        #: ?wait with no number waits this long
HTTP_WAIT_MAX = 300.0


# =============================================================================
# Errors
# Two families, as docopt has: the user's mistakes (UsageError, ConfigError:
# one line each on stderr, exit 2, no traceback) and our own bugs (a
# traceback and exit 70).
# =============================================================================


class ProcwrapError(Exception):
    """Base of the errors procwrap reports to a user.

    `exit_status` is what the command line exits with.  Each message is
    complete: where, what, and how to fix it::

        >>> raise UsageError("--timeout: expected seconds, got 'soon'")
    """
    exit_status = 1


class UsageError(ProcwrapError):
    """A bad flag, environment twin or command line (exit 2)."""
    exit_status = EX_USAGE


class ConfigError(UsageError):
    """One or more problems in a config file, each with its place.

    `problems` holds one message per problem; str() joins them by newlines.
    """

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        UsageError.__init__(self, "\n".join(self.problems))


class UnavailableError(ProcwrapError):
    """Something procwrap needs is not there (exit 69): a supervisor's control socket."""
    exit_status = EX_UNAVAILABLE


class SecretError(UnavailableError):
    """A location could not be fetched or read (exit 69): a missing file or
    variable, a refused or unreachable service, content not in its format.
    The message names the variable and the location, never the value."""


class _SpawnError(Exception):
    """fork() worked but the child could not exec (reported on a CLOEXEC pipe)."""

    def __init__(self, stage, code):
        Exception.__init__(self, stage, code)
        self.stage = stage              #: 'chdir', 'user' or 'exec'
        self.errno = code               #: errno from the child
        self.status = EX_NOTFOUND if (stage == "exec" and code == errno.ENOENT) else EX_NOEXEC


#: Set in a script-mode procwrap re-exec'd without `site` (see
#: _reexec_compiled): the site-packages directories are added on first need.
_LAZY_SITE = []


def _require(module, pip_name, why, where):
    """Import an optional library at its point of use, or say how to get it."""
    import importlib
    if _LAZY_SITE:
        del _LAZY_SITE[:]
        import site
        site.main()             # what -S left out: site-packages, .pth files
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(MISSING_LIBRARY_MSG % (where, pip_name, why, pip_name))


# =============================================================================
# Pure helpers
# Durations, signals, exit statuses, backoff, dotenv, $(VAR) expansion,
# logfmt, redaction: functions of their arguments, table-tested.
# =============================================================================


_DURATION_RE = _Pattern(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_DIGITS_RE = _Pattern(r"\A[0-9]+\Z")
_CONTROL_RE = _Pattern("[\x00-\x1f\x7f-\x9f]")


def _json_object(data):
    """A JSON object from UTF-8 bytes or text, or None."""
    import json
    try:
        value = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_digits(text):
    """Only ASCII digits?  str.isdigit() says yes to '²', which int() refuses."""
    return isinstance(text, str) and _DIGITS_RE.match(text) is not None


class _TooLong(ValueError):
    """A duration over MAX_SECONDS (infinity included)."""


def _os_text_problem(text):
    """Why `text` cannot be an argument, path or variable (NUL_MSG or
    UNENCODABLE_MSG), or None when it can."""
    if "\0" in text:
        return NUL_MSG
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return UNENCODABLE_MSG
    return None


def _parse_duration(value):
    """Seconds from 10, 1.5, '10', '500ms', '2m' or '1h', at most MAX_SECONDS;
    ValueError otherwise (NaN, infinity, negative, 10**400)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        seconds = value
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError(value)
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    # Comparisons are False for NaN, and exact for integers of any size.
    if not 0 <= seconds:
        raise ValueError(value)
    if seconds > MAX_SECONDS:
        raise _TooLong(value)
    return float(seconds)


def _parse_signal(value):
    """A signal number from 'TERM', 'SIGTERM', 'term' or '15'; ValueError otherwise."""
    text = str(value).strip().upper()
    if _is_digits(text):
        number = int(text)
        if number not in _ALL_SIGNALS:
            raise ValueError(value)
        try:
            return signal.Signals(number)
        except ValueError:      # a realtime signal without a name of its own
            return number
    if not text.startswith("SIG"):
        text = "SIG" + text
    if text.startswith("SIG_") or not hasattr(signal, text):
        raise ValueError(value)
    return getattr(signal, text)


def _signal_name(number):
    """'SIGTERM' for 15; 'signal 40' for numbers without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


class _BadValue(ValueError):
    """A value that is not of its type.  `expected` says what would be, in
    the one wording that the config checker and the command line share:
    'processes[0].stopTimeout: expected seconds ..., got 'soon'' and
    '--timeout: expected seconds ..., got 'soon'' read alike."""

    def __init__(self, expected, whole=False):
        ValueError.__init__(self, expected)
        self.expected = expected        #: 'expected seconds (10, 1.5, 500ms, 2m)'
        self.whole = whole              #: the message says all, 'got' included

    def message(self, value):
        """What to tell the user about `value`."""
        return self.expected if self.whole else "%s, got %r" % (self.expected, value)


# -- the value types shared by configs and options: each returns the value,
# -- or raises _BadValue

def _value_seconds(value):
    """A duration: seconds as a number >= 0, or text with a unit (500ms, 2m, 1h)."""
    try:
        return _parse_duration(value)
    except _TooLong:
        raise _BadValue(TOO_LONG_MSG % (MAX_SECONDS, value), whole=True)
    except ValueError:
        raise _BadValue("expected seconds (10, 1.5, 500ms, 2m)")


def _value_number(value, minimum, integer=False, maximum=None):
    """A number (a whole one if `integer`) from minimum to maximum.  Seconds
    (the default maximum) end at MAX_SECONDS; NaN and infinity are never
    numbers here, nor is True."""
    kinds = int if integer else (int, float)
    if maximum is None:
        maximum = (1 << 31) - 1 if integer else MAX_SECONDS
    what = "a whole number" if integer else "a number"
    # Comparisons are False for NaN, and exact for integers of any size.
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= minimum:
        raise _BadValue("expected %s >= %s" % (what, minimum))
    if value > maximum:
        raise _BadValue("expected %s <= %d" % (what, maximum))
    return value


def _value_codes(value):
    """Exit statuses: a list of whole numbers 0-255 (successCodes), not empty."""
    if not isinstance(value, list) or not value or not all(
            isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 255
            for code in value):
        raise _BadValue("expected a list of exit statuses 0-255, like [0, 3]")
    return tuple(value)


_BYTES_RE = _Pattern(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|[kKmMgG][bB]|k|M|G|T)?\s*$")
_BYTE_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
               "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30,     # supervisord's (1024)
               "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}    # Kubernetes'


def _value_bytes(value):
    """A size in bytes: a whole number, or a number with a unit: Ki, Mi, Gi,
    Ti and supervisord's KB, MB, GB (any case) are powers of 1024;
    Kubernetes' k, M, G, T powers of 1000."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _BYTES_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _BadValue("expected bytes: a whole number, or like 50MB, 512Mi, 1Gi")
    unit = match.group(2) or ""
    unit = unit.upper() if unit.upper() in ("KB", "MB", "GB") else unit
    return int(float(match.group(1)) * _BYTE_UNITS.get(unit, 1))


def _value_port(value, listen=False):
    """A TCP/UDP port: 1-65535, or 0 (any free one) for a listening socket."""
    if isinstance(value, str) and _is_digits(value.strip()):
        value = int(value)
    lowest = 0 if listen else 1
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 65535:
        raise _BadValue("expected a port from %d to 65535" % lowest)
    return value


def _value_fraction(value):
    """A fraction from 0 to 1 (backoff jitter)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _BadValue("expected a fraction from 0 to 1")
    return value


def _value_signal(value):
    """A signal, by name (TERM, SIGTERM) or number."""
    try:
        return _parse_signal(value)
    except ValueError:
        raise _BadValue("expected a signal name like TERM or INT")


def _value_hosts(value):
    """[user@]host[:port] names, comma-separated (or a list): nothing a
    shell or ssh would read as more than a name."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _BadValue("expected [user@]host[:port], or several comma-separated")
    for name in names:
        if not isinstance(name, str) or not name.strip() or name.strip().startswith("-") \
                or any(c in name.strip() for c in " \t'\"\\;$`"):
            raise _BadValue("expected [user@]host[:port], or several comma-separated")
    return [name.strip() for name in names]


def _value_choice(value, choices):
    """One of `choices`, exactly (no case folding: 'always' is a typo)."""
    if value not in choices:
        raise _BadValue("expected %s or %s" % (", ".join(choices[:-1]), choices[-1])
                        if len(choices) > 1 else "expected " + choices[0])
    return value


#: What the command line takes as a number: ASCII digits, a point, digits
#: (float() would take '\u0663' and '1_000', which no option means).
_NUMBER_RE = _Pattern(r"\A(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")


def _number_text(text):
    """An option's text as an int or a float when it is written as one; else
    the text itself, which the number types then refuse by name."""
    text = text.strip()
    if _NUMBER_RE.match(text):
        return int(text) if text.isdigit() else float(text)
    return text


def _exit_status(wait_status):
    """The shell's view of a wait status: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _describe_wait(wait_status):
    """'exited with status 3' or 'terminated by SIGKILL (status 137)' from a wait status."""
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        return "terminated by %s (status %d)" % (_signal_name(signum), 128 + signum)
    return "exited with status %d" % os.WEXITSTATUS(wait_status)


def _backoff_delay(restarts, initial, factor, maximum, jitter=0.0, rand=None):
    """Seconds to wait before restart number `restarts` (1-based).

    initial * factor**(restarts-1), capped at `maximum`, then shortened by up
    to `jitter` (a fraction) so a fleet that failed together does not retry
    together.  `rand` is injectable for tests.
    """
    exponent = max(0, restarts - 1)
    try:
        delay = min(maximum, initial * (float(factor) ** exponent))
    except OverflowError:       # 1000.0 ** 200: the cap has long been reached
        delay = maximum if initial > 0 else 0.0
    if jitter:
        if rand is None:
            import random
            rand = random.random
        delay *= 1.0 - jitter * rand()
    return max(0.0, delay)


_K8S_VAR_RE = _Pattern(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand_vars(text, env):
    """Kubernetes' $(VAR) expansion: $(NAME) from env, left as is if unknown; $$ is $."""
    if "$" not in text:
        return text

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _K8S_VAR_RE.sub(replace, text)


_SHELL_EXPANSION_RE = _Pattern(r"\$(?:\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?!-]|"
                               r"\((?![A-Za-z_][A-Za-z0-9_]*\))[^)]*\)?)|`[^`]*`?")
_SHELL_OPERATORS = ("&&", "||", ">>", "<<", ">&", "<&", "|", "&", ";", "<", ">", "(", ")")


def _shell_syntax(text):
    """The first thing in `text` that a shell would act on and a split into
    words does not (an operator, a redirection, $VAR, `...`), quoted for a
    message; None when there is none.  Kubernetes' $(NAME) and $$ are
    procwrap's own expansions, not shell syntax."""
    quote, index = None, 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            index += 1          # the next character is literal
        elif quote == '"' and char == '"':
            quote = None
        elif char == "$" and _K8S_VAR_RE.match(text, index):
            index = _K8S_VAR_RE.match(text, index).end() - 1
        elif char in "$`":
            match = _SHELL_EXPANSION_RE.match(text, index)
            if match:
                return "`%s`" % match.group(0)
        elif quote is None and char in "'\"":
            quote = char
        elif quote is None and char in "|&;<>()":
            return "`%s`" % next(op for op in _SHELL_OPERATORS if text.startswith(op, index))
        index += 1
    return None


# -- dotenv: python-dotenv's grammar (SPECS.md 3.1-3.2), errors instead of skips.

_DOTENV_SKIP_RE = _Pattern(r"(?:[ \t\f\v]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|\Z))+")
_DOTENV_EXPORT_RE = _Pattern(r"export[ \t]+")
_DOTENV_KEY_RE = _Pattern(r"'([^']+)'|([^=#\s]+)")
_DOTENV_EQUALS_RE = _Pattern(r"[ \t]*(=[ \t]*)?")
_DOTENV_SINGLE_RE = _Pattern(r"'((?:\\.|[^'\\])*)'", re.S)
_DOTENV_DOUBLE_RE = _Pattern(r'"((?:\\.|[^"\\])*)"', re.S)
_DOTENV_UNQUOTED_RE = _Pattern(r"[^\r\n]*")
_DOTENV_END_RE = _Pattern(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_DOTENV_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
                   "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_DOTENV_DOUBLE_ESCAPE_RE = _Pattern(r"\\(.)", re.S)
_DOTENV_SINGLE_ESCAPE_RE = _Pattern(r"\\([\\'])")
_DOTENV_INTERPOLATE_RE = _Pattern(r"\$\{([^}:]*)(?::-([^}]*))?\}")


def _parse_dotenv(text, where, environ):
    """Bindings of a dotenv file as [(name, value)], in order.

    python-dotenv semantics: `export `, comments, single quotes (only \\\\ and
    \\' escaped), double quotes with C escapes, multi-line quoted values,
    `${VAR}` and `${VAR:-default}` looked up in earlier bindings, then in
    `environ`.  A key without '=' has no value and is left out.  Unlike
    python-dotenv, a statement it cannot parse is an error, not a warning,
    which names the line and column but never quotes it (it may hold a secret).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    result, seen = [], {}
    pos, end = 0, len(text)
    while True:
        skip = _DOTENV_SKIP_RE.match(text, pos)
        if skip:
            pos = skip.end()
        pos = _skip_blanks(text, pos)
        if pos >= end:
            return result
        export = _DOTENV_EXPORT_RE.match(text, pos)
        if export:
            pos = export.end()
        key = _DOTENV_KEY_RE.match(text, pos)
        if not key:
            raise _DotenvError(where, text, pos)
        name = key.group(1) if key.group(1) is not None else key.group(2)
        pos = key.end()
        equals = _DOTENV_EQUALS_RE.match(text, pos)
        pos = equals.end()
        value = None
        if equals.group(1) is not None:
            value, pos = _dotenv_value(text, pos, equals.group(1))
            if value is None:
                raise _DotenvError(where, text, pos)
        tail = _DOTENV_END_RE.match(text, pos)
        if not tail or (tail.end() == pos and pos < end):
            raise _DotenvError(where, text, pos)
        pos = tail.end()
        if value is not None:
            value = _dotenv_interpolate(value, seen, environ)
            seen[name] = value
            result.append((name, value))


def _skip_blanks(text, pos):
    """Skip spaces and tabs (a trailing line without a newline)."""
    while pos < len(text) and text[pos] in " \t\f\v":
        pos += 1
    return pos


def _dotenv_value(text, pos, equals):
    """(value, new position) of the value starting at pos; (None, pos) if malformed."""
    char = text[pos:pos + 1]
    if char == "'":
        match = _DOTENV_SINGLE_RE.match(text, pos)
        if not match:
            return None, pos
        return _DOTENV_SINGLE_ESCAPE_RE.sub(r"\1", match.group(1)), match.end()
    if char == '"':
        match = _DOTENV_DOUBLE_RE.match(text, pos)
        if not match:
            return None, pos
        return _DOTENV_DOUBLE_ESCAPE_RE.sub(
            lambda m: _DOTENV_ESCAPES.get(m.group(1), m.group(0)), match.group(1)), match.end()
    if char == "#" and equals != "=":
        return "", pos    # python-dotenv 1.2.4: `KEY= # comment` is empty
    match = _DOTENV_UNQUOTED_RE.match(text, pos)
    raw = match.group(0)
    comment = re.search(r"\s#", raw)
    if comment:
        raw = raw[:comment.start()]
    return raw.rstrip(), match.end()


def _dotenv_interpolate(value, seen, environ):
    """Replace ${NAME} and ${NAME:-default}: file bindings first, then environ."""
    if "${" not in value:
        return value

    def replace(match):
        name, default = match.group(1), match.group(2)
        if name in seen:
            return seen[name]
        if name in environ:
            return environ[name]
        return default or ""
    return _DOTENV_INTERPOLATE_RE.sub(replace, value)


class _DotenvError(ConfigError):
    """A statement the dotenv grammar cannot read, with its line and column."""

    def __init__(self, where, text, pos):
        self.line = text.count("\n", 0, pos) + 1
        self.column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        ConfigError.__init__(self, "%s:%d:%d: %s"
                             % (where, self.line, self.column, DOTENV_ERROR_MSG))


class _ShapeError(ValueError):
    """A parsed document too deep or too large (its message says how to fix it)."""


def _check_shape(value):
    """Raise _ShapeError if a parsed document nests deeper than MAX_NESTING or
    holds more than MAX_NODES values (aliases counted each time they are used).

    Iterative, and it stops at the first excess, so an alias bomb costs
    microseconds, and nothing that walks the document later can recurse
    too deep.
    """
    stack, nodes = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _ShapeError("more than %d values (a YAML alias bomb?); make it smaller"
                              % MAX_NODES)
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > MAX_NESTING:
            raise _ShapeError("nested deeper than %d levels; flatten it" % MAX_NESTING)
        stack.extend((child, depth + 1) for child in item)


def _parse_text(text, fmt, where, secret=False):
    """JSON, YAML or TOML text parsed, then held to _check_shape().

    _ShapeError if too deep or large; ValueError if it cannot be parsed: the
    parser's message, or with `secret` only the position (a YAML snippet
    would print the secret).  Parsers are
    third-party code fed the user's bytes, so anything they raise (an
    invalid date, too deep a nesting) is the input's fault.
    """
    try:
        if fmt == "json":
            import json
            value = json.loads(text)
        elif fmt == "yaml":
            yaml = _require("yaml", "PyYAML", "to read YAML", where)
            value = yaml.safe_load(text)
        else:
            try:
                import tomllib as toml          # py<3.11: tomli, the same parser
            except ImportError:
                toml = _require("tomli", "tomli", "to read TOML before Python 3.11", where)
            value = toml.loads(text)
    except ConfigError:
        raise
    except RecursionError:
        raise _ShapeError("nested deeper than %d levels; flatten it" % MAX_NESTING)
    except Exception as error:
        mark = getattr(error, "problem_mark", None)
        if secret and mark is not None:
            raise ValueError("at line %d" % (mark.line + 1))
        raise ValueError(" ".join(str(error).split()) if not secret or fmt != "yaml" else "")
    _check_shape(value)
    return value


def _parse_http_address(text, where):
    """(host, port) from '[HOST:]PORT' (port 0: any free one); the host defaults to
    0.0.0.0, since a container's probes come from outside it."""
    host, colon, port = str(text).rpartition(":")
    if not _is_digits(port) or not 0 <= int(port) < 65536 or "\0" in host:
        raise UsageError(BAD_VALUE_MSG % (where, "expected [HOST:]PORT, like 8111 or "
                                          "127.0.0.1:8111", text))
    return (host.strip("[]") or "0.0.0.0"), int(port)


# -- severity in a line of output (logs.level: auto)

_SEVERITY_WORDS = {"ERROR": "error", "ERR": "error", "FATAL": "error", "CRITICAL": "error",
                   "CRIT": "error", "PANIC": "error", "EMERG": "error", "ALERT": "error",
                   "WARN": "warning", "WARNING": "warning", "INFO": "info", "NOTICE": "info",
                   "DEBUG": "debug", "TRACE": "debug"}
_SEVERITY_KEY_RE = _Pattern(r'(?:^|[\s,{])"?(?:level|severity|lvl|loglevel)"?\s*[=:]\s*'
                            r'"?([A-Za-z]+)', re.I)
_SEVERITY_WORD_RE = _Pattern(r"\b(ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|EMERG|ALERT|WARNING|"
                             r"WARN|INFO|NOTICE|DEBUG|TRACE)\b")


def _detect_severity(line):
    """The level a line says it has, as procwrap's levels (debug, info,
    warning, error), or None: a `level`/`severity` key (JSON or logfmt, any
    case), else the first upper-case severity word (ERROR, WARN, INFO...)."""
    match = _SEVERITY_KEY_RE.search(line)
    if match is not None:
        level = _SEVERITY_WORDS.get(match.group(1).upper())
        if level is not None:
            return level
    match = _SEVERITY_WORD_RE.search(line)
    return _SEVERITY_WORDS[match.group(1)] if match is not None else None


# -- Prometheus text from several targets, merged (GET /prommerge; SPECS.md 12.5)

_PROM_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")
_PROM_LABEL_RE = _Pattern(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _prom_sample(line, label, value):
    """A sample line with label="value" added (one it had of that name is
    kept as exported_<name>, as Prometheus does); None if it is not a sample."""
    index = 0
    while index < len(line) and line[index] not in "{ \t":
        index += 1
    name, rest, pairs = line[:index], line[index:], []
    if not name:
        return None, None
    if rest.startswith("{"):
        position, quote = 1, False
        while position < len(rest) and (quote or rest[position] != "}"):
            if rest[position] == "\\" and quote:
                position += 1
            elif rest[position] == '"':
                quote = not quote
            position += 1
        if position >= len(rest):
            return None, None
        inside, rest = rest[1:position], rest[position + 1:]
        for match in _PROM_LABEL_RE.finditer(inside):
            key = match.group(1)
            pairs.append('%s="%s"' % ("exported_" + key if key == label else key,
                                      match.group(2)))
    if not rest.strip():
        return None, None
    pairs.append('%s="%s"' % (label, value))
    return name, "%s{%s}%s" % (name, ",".join(pairs), rest)


def _merge_prometheus(scrapes, label="process_name"):
    """One exposition from [(name, text)]: every sample labelled
    label="name", families of the same name merged under one HELP and one
    TYPE (the first seen), each family's samples together, as promtool wants."""
    families, order = {}, []

    def family(name):
        if name not in families:
            families[name] = [None, None, []]       #: help, type, samples
            order.append(name)
        return families[name]
    for process, text in scrapes:
        current = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    entry, current = family(parts[2]), parts[2]
                    slot = 0 if parts[1] == "HELP" else 1
                    if entry[slot] is None:
                        entry[slot] = parts[3] if len(parts) > 3 else ""
                continue
            name, sample = _prom_sample(line, label, process)
            if sample is None:
                continue
            owner = current if current is not None and (name == current or (
                name.startswith(current) and name[len(current):] in _PROM_SUFFIXES)) else name
            family(owner)[2].append(sample)
    lines = []
    for name in order:
        help_text, kind, samples = families[name]
        if help_text is not None:
            lines.append("# HELP %s %s" % (name, help_text))
        if kind is not None:
            lines.append("# TYPE %s %s" % (name, kind.strip()))
        lines.extend(samples)
    return "\n".join(lines) + "\n" if lines else ""


# -- the Downward API's labels file (SPECS.md 12.4): key="value" lines, Go-quoted

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92,
               '"': 34, "'": 39}
_LABEL_LINE_RE = _Pattern(r'^([^=\s]+)="(.*)"$')


def _go_unquote(text):
    """The text inside a Go-quoted string (strconv.Quote's escapes: \\n,
    \\xNN, \\uXXXX, \\UXXXXXXXX, \\NNN octal); ValueError on a bad escape.
    Bytes that are not UTF-8 become U+FFFD."""
    out, index = bytearray(), 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            out += char.encode("utf-8")
            index += 1
            continue
        kind = text[index + 1:index + 2]
        if kind in _GO_ESCAPES:
            out.append(_GO_ESCAPES[kind])
            index += 2
        elif kind in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[kind]
            digits = text[index + 2:index + 2 + size]
            if len(digits) != size or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("bad \\%s escape" % kind)
            number = int(digits, 16)
            if kind == "x":
                out.append(number)
            elif number > 0x10FFFF:
                raise ValueError("bad \\%s escape" % kind)
            else:
                out += chr(number).encode("utf-8", "surrogatepass")
            index += 2 + size
        elif kind and kind in "01234567":
            digits = text[index + 1:index + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) \
                    or int(digits, 8) > 255:
                raise ValueError("bad octal escape")
            out.append(int(digits, 8))
            index += 4
        else:
            raise ValueError("bad escape \\%s" % kind)
    return out.decode("utf-8", "replace")


def _parse_labels_file(text, where):
    """{key: value} of a Downward API labels (or annotations) file; blank
    lines skipped; ConfigError naming the line for anything else."""
    labels = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        match = _LABEL_LINE_RE.match(line.rstrip("\r"))
        try:
            if match is None:
                raise ValueError('expected key="value"')
            labels[match.group(1)] = _go_unquote(match.group(2))
        except ValueError as error:
            raise ConfigError('%s:%d: %s; a Downward API labels file has key="value" lines'
                              % (where, number, error))
    return labels


def _metric_label_name(key):
    """A label key as Prometheus allows it: app.kubernetes.io/name -> app_kubernetes_io_name."""
    name = "".join(c if (c.isalnum() and ord(c) < 128) or c == "_" else "_" for c in key)
    return "_" + name if name[:1].isdigit() or not name else name


# -- timestamps and logfmt

_last_second = [None, ""]


def _rfc3339(now):
    """'2026-11-22T00:07:43.123Z' (RFC 3339, UTC, milliseconds); cached per second."""
    second = int(now)
    if second != _last_second[0]:
        _last_second[0] = second
        _last_second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return "%s.%03dZ" % (_last_second[1], int((now - second) * 1000))


_LOGFMT_QUOTE_RE = _Pattern('[\x00-\x20="\x7f\ufffd]')
_LOGFMT_ESCAPE_RE = _Pattern('[\x00-\x1f"\\\\\x7f\ufffd]')
_LOGFMT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _logfmt_escape(text):
    """Escape for inside a logfmt double-quoted value (go-logfmt's rules)."""
    return _LOGFMT_ESCAPE_RE.sub(
        lambda m: _LOGFMT_ESCAPES.get(m.group(0)) or "\\u%04x" % ord(m.group(0)), text)


def _logfmt_value(value):
    """A logfmt value: bare when it can be, else double-quoted and escaped."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text == "null" or _LOGFMT_QUOTE_RE.search(text):
        return '"%s"' % _logfmt_escape(text)
    return text


def _logfmt_key(key):
    """A logfmt key: runes <= space, '=', '"' and DEL dropped (go-logfmt)."""
    return re.sub('[\x00-\x20="\x7f]', "", str(key)) or "_"


_UNPRINTABLE_RE = _Pattern("[\x00-\x08\x0a-\x1f\x7f]")


def _printable(text):
    """One line of text for a terminal: a newline as \\n, other control
    characters as \\xNN (a probe's output may hold both, or an escape
    sequence)."""
    return _UNPRINTABLE_RE.sub(
        lambda m: {"\n": "\\n", "\r": "\\r"}.get(m.group(0)) or "\\x%02x" % ord(m.group(0)),
        text)


def _format_bytes(count):
    """A size as a person reads it: 512 MiB, 1.5 GiB, 900 KiB, 12 B."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return "%s %s" % (_format_seconds(round(count / float(size), 1)), unit)
    return "%d B" % count


def _plural(count, word, plural=None):
    """'1 process', '2 processes', '0 init entries': a count and its noun."""
    if count == 1:
        return "1 " + word
    if plural is None:
        plural = (word[:-1] + "ies" if word.endswith("y") else
                  word + "es" if word.endswith(("s", "ch")) else word + "s")
    return "%d %s" % (count, plural)


def _format_seconds(seconds):
    """'10' for 10.0, '1.5' for 1.5."""
    return ("%.3f" % seconds).rstrip("0").rstrip(".")


def _did_you_mean(word, choices):
    """'; did you mean 'restartPolicy'?' or '' when nothing is close."""
    import difflib
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return DID_YOU_MEAN_MSG % ("'%s'" % close[0]) if close else ""


def _type_name(value):
    """'a list', 'a number', ... for messages."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    for kind, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number")):
        if isinstance(value, kind):
            return "%s (%r)" % (name, value)
    return "null" if value is None else type(value).__name__


class _Redactor(object):
    """Remembers every resolved value and blanks it out of procwrap's own output.

    Log.event and main's error lines pass through it; child output does
    not (procwrap cannot know what an application chooses to print).
    """
    enabled = True          #: False under --log-secrets

    def __init__(self):
        self.values = set()         #: strings to hide
        self.public = set()         #: procwrap's identifiers (process names): never hidden
        self._pattern = None        #: one alternation of them, longest first

    def make_public(self, names):
        """Identifiers that every record shows anyway (process names): a
        resolved value equal to one is not blanked out, so a process named
        postgres stays postgres when a password is 'postgres' too."""
        self.public.update(names)
        self._pattern = None

    def contains(self, text):
        """Does `text` hold a resolved value (whatever --log-secrets says)?"""
        return bool(self.values) and self._compiled().search(text) is not None

    def _compiled(self):
        """The alternation of the values to hide, longest first (a never-
        matching pattern when there are none)."""
        if self._pattern is None:
            hidden = sorted(self.values - self.public, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, hidden)) or "(?!)")
        return self._pattern

    def add(self, value):
        """Remember a resolved value: each string in a dict or list, each line of it."""
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            for item in value:
                self.add(item)
        elif isinstance(value, str):
            for text in [value] + value.splitlines():
                if len(text.strip()) >= REDACT_MIN_LENGTH and text not in self.values:
                    self.values.add(str(text))
                    self._pattern = None

    def __call__(self, text):
        """`text` with every remembered value replaced by [secret]."""
        if not self.values or not self.enabled or not isinstance(text, str):
            return text
        return self._compiled().sub(REDACTED, text)


def _utf8_cut(data, limit):
    """The largest cut <= limit that does not split a UTF-8 sequence."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 and cut > 0 else limit


# =============================================================================
# Files
# What procwrap reads (with a bound, so /dev/zero cannot fill memory) and
# what it writes (created safely, removed only while still its own).
# =============================================================================


def _read_dotenv(path, where, environ):
    """Bindings of the dotenv file at `path`; ConfigError naming `where` if unreadable."""
    try:
        text = _read_file(path).decode("utf-8")
    except (OSError, ValueError) as error:
        raise ConfigError("%s: cannot read env file %r: %s; fix the path"
                          % (where, path, _read_error(error)))
    return _parse_dotenv(text, path, environ)


def _read_file(path, limit=MAX_FILE_BYTES):
    """The bytes of the file at `path`, at most `limit` of them.

    OSError if it cannot be read, ValueError if the path holds a NUL byte
    or the file is larger (an endless /dev/zero included).
    """
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError("larger than %d MiB" % (limit >> 20))
    return data


def _read_error(error):
    """The reason a _read_file() failed, as messages give it."""
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if "null" in str(error):
        return "the path holds a NUL byte"
    return str(error)


def _isatty(fd):
    """os.isatty that treats a closed fd as 'not a tty'."""
    try:
        return os.isatty(fd)
    except OSError:
        return False


class _OwnPath(object):
    """A file or socket path procwrap writes, created safely and removed only
    while it is still the one this run created.

    A file is written to an unpredictable temporary name in the same
    directory (O_CREAT|O_EXCL|O_NOFOLLOW, so nothing pre-created there and no
    symlink is written through), then renamed over the path, which replaces
    a link rather than following it.  What is at the path already must be
    procwrap's own: what this run created (same _identity()), or a
    leftover of procwrap's kind (`leftover(path, stat)`: a file carrying
    procwrap's marker, a socket nobody answers on), owned by our user.
    Anything else (a file procwrap did not write, a directory, a device, a
    FIFO, a symlink) is refused with a UsageError and left alone::

        readiness = _OwnPath("/tmp/started", "--readiness-file", 0o644, marker)
        readiness.check()           # at start: exit 2 now, not later
        readiness.write(b"...")
        readiness.remove()          # only if it is still ours
    """

    def __init__(self, path, where, mode=0o600, leftover=None):
        self.path = path            #: the path, as the user gave it
        self.where = where          #: the flag or field, for messages
        self.mode = mode            #: permissions of what we create
        self.leftover = leftover    #: func(path, lstat) -> True for a stale one of ours
        self.identity = None        #: _identity() of what this run created

    def refusal(self):
        """Why the path may not be written now (a message), or None."""
        import stat
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            return "cannot use %r: %s; fix the path" % (self.path, _read_error(error))
        if _identity(info) == self.identity:
            return None
        if info.st_uid == os.geteuid() and self.leftover is not None \
                and self.leftover(self.path, info):
            return None
        kind = ("a symbolic link" if stat.S_ISLNK(info.st_mode) else
                "a directory" if stat.S_ISDIR(info.st_mode) else
                "a FIFO" if stat.S_ISFIFO(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "a file")
        return ("%r is %s that procwrap did not create; procwrap replaces only its own, so "
                "remove it or pick another path" % (self.path, kind))

    def check(self):
        """UsageError (exit 2) if what is at the path may not be replaced."""
        refusal = self.refusal()
        if refusal:
            raise UsageError("%s: %s" % (self.where, refusal))

    def write(self, data, owner=None):
        """Put `data` (bytes) at the path atomically, created with self.mode and
        owned by `owner` (a _User) if given; UsageError if it cannot be."""
        import binascii
        self.check()
        directory, base = os.path.split(self.path)
        temporary = os.path.join(directory, ".%s.%s.tmp" % (
            base, binascii.hexlify(os.urandom(8)).decode("ascii")))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temporary, flags, self.mode)
        except (OSError, ValueError) as error:
            raise UsageError("%s: cannot write %r: %s; fix the path"
                             % (self.where, self.path, _read_error(error)))
        try:
            try:
                os.fchmod(fd, self.mode)        # the umask took bits away
                if owner is not None:
                    os.fchown(fd, owner.uid, owner.gid)
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
            os.rename(temporary, self.path)
            self.identity = _identity(os.lstat(self.path))
        except OSError as error:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise UsageError("%s: cannot write %r: %s; fix the path"
                             % (self.where, self.path, error.strerror))

    def created(self):
        """Note that this run has just created the path itself (bound a socket there)."""
        self.identity = _identity(os.lstat(self.path))

    def remove(self):
        """Remove the path if it is still what this run created."""
        if self.identity is None:
            return
        try:
            if _identity(os.lstat(self.path)) == self.identity:
                os.unlink(self.path)
        except OSError:
            pass
        self.identity = None


def _identity(info):
    """What tells one file from another at the same path: device and inode, and
    the change time, since a file removed and created again may get its inode
    number back at once."""
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def _has_marker(marker, within=0):
    """A `leftover` test for _OwnPath: a small regular file that starts with
    `marker` (or holds it in its first `within` bytes)."""
    def leftover(path, info):
        import stat
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            head = os.read(fd, len(marker) + within)
            return head.startswith(marker) if not within else marker in head
        except OSError:         # /proc/self/mem is a 'regular file' that reads EIO
            return False
        finally:
            os.close(fd)
    return leftover


# =============================================================================
# Event loop & streams
# One selector, a heap of timers on the monotonic clock and a self-pipe that
# signal.set_wakeup_fd writes signal numbers into; one worker thread for
# blocking work.  Streams over sockets and fds speak lines or frames, with
# back-pressure; listeners accept, datagram sockets parse.  Idle means
# blocked in select() with no timeout: no tick, no polling.
# =============================================================================


#: What Loop.watch waits for.
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Timer(object):
    """A cancellable call at `when` (monotonic seconds)."""
    __slots__ = ("when", "func", "args", "cancelled")

    def __init__(self, when, func, args):
        self.when = when            #: monotonic deadline
        self.func = func            #: called with args when due
        self.args = args
        self.cancelled = False      #: left in the heap, skipped when popped

    def __lt__(self, other):
        return self.when < other.when

    def cancel(self):
        """Mark cancelled; the heap drops it when it reaches the top."""
        self.cancelled = True


def _signals_to_take():
    """The signals to handle: every catchable one but UNFORWARDED_SIGNALS,
    except those ignored when procwrap started (tini's rule: `nohup procwrap
    ...` keeps its child deaf to HUP; they are left alone, so the child
    inherits SIG_IGN).  CPython itself ignores PIPE and XFSZ, so those two
    cannot be told apart: they are taken."""
    skip = set(getattr(signal, name) for name in UNFORWARDED_SIGNALS)
    take = []
    for signum in sorted(_ALL_SIGNALS):
        if signum in skip:
            continue
        try:
            handler = signal.getsignal(signum)
        except (ValueError, OSError):
            continue
        if handler != signal.SIG_IGN or signum in (signal.SIGPIPE, signal.SIGXFSZ):
            take.append(signum)
    return take


class _SignalRouter(object):
    """What both modes do with a signal before acting on it: drop the one HUP
    and CONT that giving our terminal to the child causes, and apply
    --signal-map (dumb-init's --rewrite).  route() gives the signal to act
    on, or None."""

    def __init__(self, mapping=None):
        self.mapping = mapping or {}    #: signum -> signum, or None to drop
        self.ignore_once = set()        #: signals to drop the next time they come

    def take(self, loop, on_signal):
        """Handle every catchable signal through on_signal; reap on CHLD.
        CHLD first: off the main thread that raises, and nothing is taken."""
        loop.add_signal_handler(signal.SIGCHLD, None)
        for signum in _signals_to_take():
            try:
                loop.add_signal_handler(signum, on_signal)
            except (OSError, ValueError):
                pass    # glibc keeps 32 and 33 for itself

    def route(self, signum):
        """The signal to act on in place of `signum`, or None to drop it."""
        if signum in self.ignore_once:
            self.ignore_once.discard(signum)
            return None
        return self.mapping.get(signum, signum)


def _noop_handler(signum, frame):
    """Python-level handler: the C handler has already written to the wakeup fd."""


#: signum -> how many of those the kernel sent us for our own writes (EPIPE
#: raises SIGPIPE, EFBIG SIGXFSZ, at the writer): the loop drops that many,
#: so a closed log reader does not become a SIGPIPE to the child.
_self_inflicted = {}


def _inflicted(error):
    """Note the signal our own failed write just raised (EPIPE, EFBIG), if any."""
    signum = {errno.EPIPE: signal.SIGPIPE, errno.EFBIG: signal.SIGXFSZ}.get(
        getattr(error, "errno", None))
    if signum is not None and signal.getsignal(signum) is _noop_handler:
        _self_inflicted[signum] = _self_inflicted.get(signum, 0) + 1


class _Loop(object):
    """The one event loop: fds, timers, signals and reaping children.

    One pass: select(until the next timer) -> drain the wakeup fd -> signal
    callbacks -> fd callbacks -> due timers -> reap children if SIGCHLD came.
    A callback that raises is reported and the loop carries on.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock                          #: injectable for tests
        self.selector = selectors.DefaultSelector()
        self.timers = []                            #: heap of Timer
        self.signal_handlers = {}                   #: signum -> func(signum)
        self.children = {}                          #: pid -> func(wait_status)
        self.on_orphan = None                       #: func(pid, wait_status)
        self.on_error = None                        #: func(text) for callback crashes
        self.stopped = False                        #: run() returns when set
        self._previous = {}                         #: signum -> handler to restore
        import _thread
        self._wake_lock = _thread.allocate_lock()   #: guards _wake_w against close()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._old_wakeup = None
        self._soon = []         #: (func, args) queued by other threads, run next pass
        self.worker = None      #: the _Worker, once blocking work came
        self.wait_threads = False   #: reap each child in a thread of its own (watch_child)

    # -- registration
    def call_later(self, delay, func, *args):
        """Call func(*args) after `delay` seconds; returns the Timer."""
        timer = _Timer(self.clock() + max(0.0, delay), func, args)
        heapq.heappush(self.timers, timer)
        return timer

    def call_soon_threadsafe(self, func, *args):
        """From another thread: call func(*args) in the loop's next pass.

        The wakeup pipe carries it: byte 0 is no signal number, so a 0
        written after the call is queued means 'run the queue'.
        """
        self._soon.append((func, args))     # list.append is atomic under the GIL
        with self._wake_lock:       # close() takes it: never a write to a closed fd,
            if self._wake_w < 0:    # which may be someone else's by now
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass        # the pipe is full of wake-ups already; the loop will look

    def run_in_worker(self, func, done):
        """Run func() in the worker thread, then done(result, error) in the loop.

        For the blocking calls that must happen while the loop runs (Vault
        renewals, and whatever reports to a server): the loop never waits on
        the network.  One worker runs them one after another.
        """
        if self.worker is None:
            self.worker = _Worker(self.call_soon_threadsafe)
        self.worker.submit(func, done)

    def watch(self, fd, events, func=None):
        """Call func() whenever fd (an fd or a socket) is ready for `events`
        (READ, WRITE or both); events 0 stops watching it.  One call changes
        what is watched, whatever was before."""
        selector = self.selector
        known = selector.get_map().get(fd)
        if not events:
            if known is not None:
                selector.unregister(fd)
        elif known is None:
            selector.register(fd, events, func)
        elif known.events != events or known.data != func:
            selector.modify(fd, events, func)

    def add_signal_handler(self, signum, func):
        """Route `signum` to func(signum), through the wakeup fd (main thread
        only), and unblock it: a TERM blocked by whatever started us must
        still reach us."""
        if self._old_wakeup is None:
            try:
                self._old_wakeup = _set_wakeup_fd(self._wake_w)
            except ValueError:      # CPython: only the main thread may
                raise RuntimeError(MAIN_THREAD_MSG)
        previous = signal.getsignal(signum)
        signal.signal(signum, _noop_handler)        # raises for 32 and 33 (glibc's own)
        self._previous.setdefault(signum, previous)
        self.signal_handlers[signum] = func
        _sigmask(signal.SIG_UNBLOCK, [signum])

    def handled_signals(self):
        """What a child resets to the default before exec, so it starts as from
        a shell: the signals this loop handles, and PIPE and XFSZ, which
        CPython ignores.  Signals ignored when procwrap started are not
        handled: they stay ignored."""
        return [signal.SIGPIPE, signal.SIGXFSZ] + [
            signum for signum in self.signal_handlers
            if signum not in (signal.SIGPIPE, signal.SIGXFSZ)]

    def watch_child(self, pid, func):
        """Call func(wait_status) when pid is reaped.  A loop outside the main
        thread gets no SIGCHLD (wait_threads): a thread waits for that pid."""
        self.children[pid] = func
        if self.wait_threads:
            import threading
            threading.Thread(target=self._wait_for, args=(pid,), daemon=True,
                             name="procwrap-wait-%d" % pid).start()

    def _wait_for(self, pid):
        """A waiter thread: block in waitpid(pid), then report to the loop."""
        try:
            _, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:       # reaped by someone else's waitpid(-1)
            wait_status = 255 << 8
        self.call_soon_threadsafe(self._reaped, pid, wait_status)

    def _reaped(self, pid, wait_status):
        func = self.children.pop(pid, None)
        if func is not None:
            func(wait_status)

    def close(self):
        """Restore signal handlers, close the self-pipe, end the worker."""
        if self.worker is not None:
            self.worker.close()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if self._old_wakeup is not None:
            _set_wakeup_fd(self._old_wakeup)
        self.selector.close()
        os.close(self._wake_r)
        with self._wake_lock:
            os.close(self._wake_w)
            self._wake_w = -1       # a late call_soon_threadsafe (an abandoned thread): dropped

    # -- running
    def run(self):
        """Run passes until `stopped` is set."""
        while not self.stopped:
            self.run_once()

    def run_once(self):
        """One pass of the loop (see the class docstring)."""
        timers = self.timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        # No timer means no timeout: an idle supervisor sleeps in the kernel
        # until a child writes, exits (SIGCHLD) or a signal comes.
        timeout = min(MAX_SELECT, max(0.0, timers[0].when - self.clock())) if timers else None
        events = self.selector.select(timeout)
        signals = b""
        ready = []
        for key, _ in events:
            if key.data is None:
                signals = self._drain_wakeup()
            else:
                ready.append(key)
        # Signals first (a TERM should not wait behind a flood of output), then
        # fds, then timers; children are reaped last, so output a child wrote
        # just before exiting is read by its pipes' drain() in finish().
        reap = False
        for signum in signals:
            if signum == 0:
                continue        # call_soon_threadsafe's wake-up, handled below
            if _self_inflicted.get(signum):
                _self_inflicted[signum] -= 1
                continue        # our own write's EPIPE/EFBIG: not for the child
            if signum == signal.SIGCHLD:
                reap = True     # many SIGCHLDs, one waitpid loop
            func = self.signal_handlers.get(signum)
            if func is not None and signum != signal.SIGCHLD:
                self._call(func, signum)
        registered = self.selector.get_map()
        for key in ready:
            # An earlier callback of this pass may have closed this fd (a
            # child's first output reads its exec report): skip it then.
            if registered.get(key.fd) is key:
                self._call(key.data)
        while self._soon:
            func, args = self._soon.pop(0)
            self._call(func, *args)
        now = self.clock()
        while timers and (timers[0].cancelled or timers[0].when <= now):
            timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.cancelled = True
                self._call(timer.func, *timer.args)
        if reap:
            self.reap()

    def _drain_wakeup(self):
        """Read every signal number the C handler wrote since the last pass."""
        data = b""
        while True:
            chunk = _read_some(self._wake_r, 4096)
            if not chunk:
                return data
            data += chunk

    def reap(self):
        """waitpid(-1) until nothing is left to reap; the only place that waits.

        waitpid(-1) rather than per-pid waits: as PID 1 or subreaper, orphans
        we never started are our children too, and must not stay zombies.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            func = self.children.pop(pid, None)
            if func is not None:
                self._call(func, status)
            elif self.on_orphan is not None:
                self._call(self.on_orphan, pid, status)

    def _call(self, func, *args):
        """Run a callback; a crash is reported through on_error, the loop goes on."""
        try:
            func(*args)
        except Exception:
            import traceback
            text = traceback.format_exc()
            if self.on_error is None:
                raise
            self.on_error(text)


class _Worker(object):
    """One thread for the loop's blocking work, fed through a queue: jobs run
    one after another, and each outcome goes back to the loop through
    `report` (call_soon_threadsafe).  A daemon thread, so a job stuck on the
    network cannot hold up procwrap's exit; each job bounds its own waits."""

    def __init__(self, report):
        import queue
        import threading
        import warnings
        # py>=3.12 warns of fork() while another thread runs.  Ours makes
        # requests and takes no lock a forked child needs before exec.  (An
        # identical filter replaces itself, so this does not pile up.)
        warnings.filterwarnings("ignore", ".* is multi-threaded, use of fork", DeprecationWarning)
        self.report = report            #: func(done, result, error), thread-safe
        self.jobs = queue.Queue()       #: (func, done), or None to end the thread
        threading.Thread(target=self.work, name="procwrap-worker", daemon=True).start()

    def submit(self, func, done):
        """Run func() after the jobs queued before it; done(result, error) in the loop."""
        self.jobs.put((func, done))

    def work(self):
        """The thread: one job at a time until close()."""
        while True:
            job = self.jobs.get()
            if job is None:
                return
            func, done = job
            try:
                result, error = func(), None
            except Exception as exc:     # handed to done(), which decides
                result, error = None, exc
            self.report(done, result, error)

    def close(self):
        """End the thread once the job in hand is done (an embedding program
        runs many loops; each would leave a thread behind)."""
        self.jobs.put(None)


# -- streams: reads, writes, and the protocols spoken over them

#: Errors that mean 'nothing now, try when the loop says so'.
_AGAIN = (BlockingIOError, InterruptedError)


def _read_some(source, size=READ_SIZE):
    """One non-blocking read from an fd or a socket: bytes; b'' at EOF, or
    when the read fails (a reset connection ends a stream as EOF does);
    None when nothing is there now."""
    try:
        return os.read(source, size) if isinstance(source, int) else source.recv(size)
    except _AGAIN:
        return None
    except OSError:
        return b""


def _write_some(target, data):
    """One non-blocking write to an fd or a socket: the bytes taken, or None
    when there is no room now.  Other errors are raised.  A socket is sent
    with MSG_NOSIGNAL (a peer gone is EPIPE, not SIGPIPE); a pipe whose
    reader is gone raises SIGPIPE at us as well, which _inflicted() notes so
    it is not passed on to a child."""
    try:
        if isinstance(target, int):
            return os.write(target, data)
        return target.send(data, _MSG_NOSIGNAL)
    except _AGAIN:
        return None
    except OSError as error:
        _inflicted(error)
        raise


#: send() flag: EPIPE instead of SIGPIPE (Linux's value; 0 where unknown: the
#: socket module is not imported for it).
_MSG_NOSIGNAL = 0x4000 if sys.platform.startswith("linux") else 0


def _take_until(buffer, separator, limit):
    """(what comes before `separator`, what follows it) from the front of
    `buffer`; None when the separator has not come yet; _TooLong when more
    than `limit` bytes came without it (a line protocol's cap)."""
    end = buffer.find(separator, 0, limit + len(separator))
    if end < 0:
        if len(buffer) > limit:
            raise _TooLong(limit)
        return None
    return buffer[:end], buffer[end + len(separator):]


#: A frame: its length (4 bytes, big-endian; the kind byte and the payload),
#: one byte saying what kind of frame it is, then the payload.  Length first,
#: so a reader knows how much to wait for and can refuse a frame over its cap
#: before buffering it.
FRAME_HEAD = 5


def _frame(kind, payload):
    """One frame of `kind` (0-255) carrying `payload` (bytes)."""
    return (len(payload) + 1).to_bytes(4, "big") + bytes((kind,)) + payload


def _take_frame(buffer, limit):
    """(kind, payload, rest) from the front of `buffer`; None until a whole
    frame is there; _TooLong for a frame whose payload is over `limit` (the
    stream cannot be trusted after that: close it)."""
    if len(buffer) < FRAME_HEAD:
        return None
    size = int.from_bytes(buffer[:4], "big")
    if size < 1 or size - 1 > limit:
        raise _TooLong(limit)
    if len(buffer) < 4 + size:
        return None
    return buffer[4], buffer[FRAME_HEAD:4 + size], buffer[4 + size:]


class _Stream(object):
    """A byte stream in the loop over a socket, or over a pair of fds (a
    child's stdout and stdin, ssh's): what arrives goes to `buffer` and is
    handed to on_data() one message at a time; what queue() is given goes
    out as the other end takes it.

    process() runs on_data() in a loop: while a message is being answered
    (`busy`) or its answer waits to be sent, nothing more is read or parsed
    (unless `duplex`), so a client that pipelines 500 requests gets 500
    turns of the loop, a bounded buffer, and no recursion.  Subclasses parse
    in on_data() (with _take_until or _take_frame) and answer through queue().
    """
    closing = False         #: close once everything queued is sent
    busy = False            #: a message is being answered (a ?wait, a tail -f)
    hear_busy = False       #: read while busy, only to notice the other end leave
    duplex = False          #: read while output waits: a channel, not request-answer
    at_eof = False          #: the other end has closed its side: nothing more to read

    def __init__(self, loop, rfd, wfd=None):
        self.loop = loop
        self.rfd = rfd                  #: read from: an fd or a socket; None once closed
        self.wfd = rfd if wfd is None else wfd  #: written to: the same, or the pair's other fd
        self.buffer = b""               #: received, not yet parsed
        #: queued, not yet sent: a bytearray, so appending and taking the sent
        #: part off the front stay cheap when a slow reader lets it grow
        self.out = bytearray()
        self.since = loop.clock()       #: last activity, either way
        self.received = self.since      #: when bytes last arrived (silence is since then)
        self._processing = False        #: inside process(): it settles at its end
        self._reading = False           #: watched for reading, as last settled
        for end in set([self.rfd, self.wfd]):
            if isinstance(end, int):
                os.set_blocking(end, False)
            else:
                end.setblocking(False)
        self._settle()

    @property
    def closed(self):
        """Has close() run?"""
        return self.rfd is None

    def _settle(self):
        """Watch for what comes next: room to send, the next message, or close."""
        if self.rfd is None:
            return
        if self.out:
            read, write = self.duplex, True
        elif self.closing:
            return self.close()
        elif self.busy:
            read, write = self.hear_busy, False
        else:
            read, write = True, False
        read = read and not self.at_eof
        self._reading = read
        if self.rfd is self.wfd:
            self.loop.watch(self.rfd, (_READ if read else 0) | (_WRITE if write else 0),
                            self.on_ready)
        else:
            self.loop.watch(self.rfd, _READ if read else 0, self.on_readable)
            self.loop.watch(self.wfd, _WRITE if write else 0, self.on_writable)
        self.settled()

    def settled(self):
        """After each change of what is watched (a subclass keeps timers)."""

    def on_ready(self):
        """A socket is readable or writable (one fd, watched both ways): send
        if anything waits, read if reading is what it was watched for."""
        reading = self._reading
        if self.out:
            self.on_writable()
        if reading and self.rfd is not None and not self.at_eof:
            self.on_readable()

    def on_readable(self):
        """Bytes from the other end; process() looks at them."""
        data = _read_some(self.rfd)
        if data is None:
            return
        if not data:
            return self.on_eof()
        self.received = self.loop.clock()
        if self.busy and not self.duplex:
            return              # a follower has nothing more to ask: drop what it sends
        self.since = self.received
        self.buffer += data
        self.process()

    def on_eof(self):
        """The other end has closed its side: send what is queued, then close
        (nothing queued is lost).  A client that went away, for a server."""
        self.at_eof = self.closing = True
        self._settle()

    def process(self):
        """Hand on the messages the buffer holds, one at a time (see the class)."""
        self._processing = True
        try:
            while self.rfd is not None and not (self.out and not self.duplex) \
                    and not (self.busy or self.closing):
                if not self.on_data():
                    break
                self.taken()
        finally:
            self._processing = False
            self._settle()

    def taken(self):
        """on_data() took a message (a subclass restarts its idle clock)."""

    def on_data(self):
        """Take one message from the buffer; False when more bytes are needed."""
        raise NotImplementedError

    def queue(self, data):
        """Send `data` after what is queued already; go on with the next
        message when this answer came later than its request (a ?wait)."""
        if self.rfd is None:
            return
        self.out += data
        self._send()
        if not self._processing:
            self.process()

    def _send(self):
        """Send what fits now."""
        if not self.out or self.wfd is None:
            return
        try:
            sent = _write_some(self.wfd, self.out)
        except OSError:
            return self.close()
        if sent is None:
            return
        del self.out[:sent]
        self.since = self.loop.clock()

    def on_writable(self):
        """Room to send: send, then go on (next message, or close)."""
        self._send()
        if self.rfd is not None:
            self.process()

    def close(self):
        """Done: stop watching and close both ends."""
        if self.rfd is None:
            return
        for end in set([self.rfd, self.wfd]):
            self.loop.watch(end, 0)
            if isinstance(end, int):
                os.close(end)
            else:
                end.close()
        self.rfd = self.wfd = None
        self.closed_by()

    def closed_by(self):
        """After close() (a subclass lets go of what it holds)."""


#: Datagrams read, or connections accepted, per wake-up: a flooding sender
#: gets its turn as a pipe does, and cannot keep the loop from the rest.
PER_WAKEUP = 64


class _Listener(object):
    """A listening socket in the loop and the connections it accepted.  At
    HTTP_MAX_CONNECTIONS the connection idle the longest is closed to make
    room, so a probe always gets in; only when every one is busy (answers
    being waited for, tail -f) is a newcomer closed at once."""
    connection_class = None     #: made for each accepted socket: cls(listener, sock)

    def __init__(self, loop, sock, handler):
        self.loop = loop
        self.sock = sock
        self.handler = handler          #: the owner's callback for each request
        self.connections = set()
        sock.setblocking(False)
        loop.watch(sock, _READ, self.on_accept)

    def on_accept(self):
        """Accept the connections waiting (a bounded number, as pipes get one read)."""
        for _ in range(PER_WAKEUP):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return          # EMFILE and friends: the next wake-up tries again
            if len(self.connections) >= HTTP_MAX_CONNECTIONS and not self._evict():
                sock.close()
                continue
            self.connections.add(self.connection_class(self, sock))

    def _evict(self):
        """Close the connection idle the longest; False if none is idle."""
        idle = [connection for connection in self.connections if connection.idle()]
        if not idle:
            return False
        min(idle, key=lambda connection: connection.since).close()
        return True

    def close(self):
        """Close every connection and the listening socket."""
        for connection in list(self.connections):
            connection.close()
        self.loop.watch(self.sock, 0)
        self.sock.close()


class _Connection(_Stream):
    """One accepted client of a _Listener: a _Stream over its socket, closed
    after HTTP_IDLE_TIMEOUT without a whole request."""
    timer = None            #: the idle timeout, while waiting for a request

    def __init__(self, listener, sock):
        self.listener = listener
        self.sock = sock            #: the client's socket (None once closed)
        _Stream.__init__(self, listener.loop, sock)

    def idle(self):
        """Waiting for a request, with nothing of one received yet."""
        return not (self.busy or self.out or self.buffer) and self.sock is not None

    def settled(self):
        """The idle clock runs only while nothing is asked or being answered."""
        if self.busy or self.out:
            self._stop_timer()
        elif self.timer is None:
            self.timer = self.loop.call_later(HTTP_IDLE_TIMEOUT, self.close)

    def taken(self):
        """A request came: the idle clock starts over."""
        self._stop_timer()

    def _stop_timer(self):
        """No idle timeout while a request is in hand."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_eof(self):
        """The client went away: whatever it asked is not waited for."""
        self.close()

    def closed_by(self):
        """Done with this client."""
        self._stop_timer()
        self.sock = None
        self.listener.connections.discard(self)


def _answers(path):
    """Does something accept connections on the Unix socket at `path`?"""
    import socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except (OSError, ValueError):
        return False
    finally:
        probe.close()


def _dead_socket(path, info):
    """A `leftover` test for _OwnPath: a socket nobody answers on."""
    import stat
    return stat.S_ISSOCK(info.st_mode) and not _answers(path)


def _unix_address(text):
    """An AF_UNIX address from sd_notify's form: '/path', or '@name' for the abstract namespace."""
    return "\0" + text[1:] if text.startswith("@") else text


class _Datagrams(object):
    """A datagram socket in the loop: each datagram parse()d, and what
    parses handed to on_message; what does not is counted (no log flood)."""
    bad = 0                 #: datagrams that did not parse, or from a stranger

    def __init__(self, loop, sock, on_message):
        self.loop = loop
        self.sock = sock
        self.on_message = on_message
        sock.setblocking(False)
        loop.watch(sock, _READ, self.on_readable)

    def on_readable(self):
        """Read the datagrams waiting (up to PER_WAKEUP)."""
        for _ in range(PER_WAKEUP):
            try:
                data = self.receive()
            except (BlockingIOError, InterruptedError):
                return
            message = self.parse(data) if data is not None else None
            if message is None:
                self.bad += 1
            elif isinstance(message, list):     # several in one datagram
                for each in message:
                    self.on_message(each)
            else:
                self.on_message(message)

    def receive(self):
        """One datagram, or None to drop it (a sender we do not take)."""
        return self.sock.recv(DATAGRAM_MAX)

    def parse(self, data):
        """What a datagram says, or None when it is not a message."""
        raise NotImplementedError

    def close(self):
        """Stop listening."""
        self.loop.watch(self.sock, 0)
        self.sock.close()


def _sd_notify(address, text):
    """Send one sd_notify datagram to systemd's $NOTIFY_SOCKET ('/path' or '@abstract')."""
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(text.encode("utf-8"), _unix_address(address))
    except OSError:
        pass        # systemd gone or not listening: nothing to tell
    finally:
        sock.close()


class _Pipe(object):
    """The read end of a child's stdout or stderr, split into lines in the loop.

    Complete lines go to the sink a chunk at a time; the unfinished last line
    waits in `partial`, which never grows past `max_line` (longer lines are
    cut into marked pieces).  The pipe outlives its process until EOF, since
    a grandchild may still hold the write end.

    With fd -1 nothing is read: whoever has the bytes calls feed() and
    flush() (a remote child's output, arriving in frames).  With max_line
    None nothing is split: each chunk goes to sink.raw() as it came (the
    remote agent, which leaves the splitting to the other end).
    """
    __slots__ = ("loop", "fd", "sink", "max_line", "partial", "before")

    def __init__(self, loop, fd, sink, max_line, before=None):
        self.loop = loop            #: the Loop it is registered with
        self.fd = fd                #: non-blocking read end, or -1 (closed, or fed)
        self.sink = sink            #: where lines go
        self.max_line = max_line    #: longest line before it is split; None: raw
        self.partial = b""          #: the unfinished last line
        self.before = before        #: func() called once, before the first bytes go on
        if fd >= 0:
            os.set_blocking(fd, False)
            loop.watch(fd, _READ, self.on_readable)

    def on_readable(self):
        """The loop says the pipe is readable: one read, so every pipe gets a turn."""
        data = _read_some(self.fd)
        if data is None:
            return
        if self.before is not None:
            before, self.before = self.before, None
            before()
        if data:
            self.feed(data)
        else:
            self.close()

    def feed(self, data):
        """Split `data` (after what was left over) into complete lines and a rest."""
        if self.max_line is None:
            return self.sink.raw(data)
        if self.partial:
            data = self.partial + data
        cut = data.rfind(b"\n")
        if cut >= 0:
            complete, data = data[:cut], data[cut + 1:]
            if len(complete) > self.max_line and self._has_long_line(complete):
                for line in complete.split(b"\n"):
                    self._long(line, last=True)
            else:
                self.sink.lines(complete)
        self.partial = self._long(data, last=False)

    def _has_long_line(self, complete):
        """Is a line of `complete` over the limit?  Cheap in the common case: every
        line after the first lies inside one read, so only the first can be long
        while READ_SIZE <= max_line."""
        first = complete.find(b"\n")
        if (first if first >= 0 else len(complete)) > self.max_line:
            return True
        if READ_SIZE <= self.max_line:
            return False
        return max(map(len, complete.split(b"\n"))) > self.max_line

    def _long(self, line, last):
        """Emit marked pieces while `line` is over the limit; return or emit the rest."""
        while len(line) > self.max_line:
            cut = _utf8_cut(line, self.max_line)
            self.sink.piece(line[:cut])
            line = line[cut:]
        if last:
            self.sink.lines(line)
            return b""
        return line

    def drain(self):
        """Read what is buffered now (the child has exited) and flush the last line."""
        while self.fd >= 0:
            data = _read_some(self.fd)
            if data is None:
                break
            if not data:
                self.close()
                return
            self.feed(data)
        self.flush()

    def flush(self):
        """Emit the unfinished last line as a line of its own."""
        if self.partial:
            line, self.partial = self.partial, b""
            self.sink.lines(line)

    def close(self):
        """EOF: flush, unregister and close the read end."""
        if self.fd >= 0:
            self.flush()
            self.loop.watch(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


# =============================================================================
# Children
# fork/exec with the exec error brought back on a CLOEXEC pipe, vfork as
# PID 1, a child's output split into lines, short commands beside it, and
# the sweep that leaves no orphan.
# =============================================================================


class _User(object):
    """A run-as identity resolved from 'name', 'uid', 'name:group' or 'uid:gid'."""
    __slots__ = ("name", "uid", "gid", "groups", "home")

    def __init__(self, name, uid, gid, groups, home):
        self.name = name        #: login name (the uid as text if it has none)
        self.uid = uid          #: for setuid
        self.gid = gid          #: for setgid
        self.groups = groups    #: supplementary groups, for setgroups
        self.home = home        #: HOME for the child


#: The largest uid or gid: uid_t is 32 bits and (uid_t)-1 means "no change".
MAX_ID = (1 << 32) - 2


def _resolve_user(spec, where):
    """A _User from 'USER[:GROUP]'; ConfigError naming `where` if unknown."""
    import grp
    import pwd
    user, _, group = str(spec).partition(":")
    for text in (user, group):
        if _os_text_problem(text):
            raise ConfigError("%s: %s" % (where, _os_text_problem(text)))
        if _is_digits(text) and int(text) > MAX_ID:
            raise ConfigError("%s: %s is not a user or group id (at most %d); fix the number"
                              % (where, text, MAX_ID))
    try:
        entry = pwd.getpwuid(int(user)) if _is_digits(user) else pwd.getpwnam(user)
        name, uid, gid, home = entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir
    except KeyError:
        if not _is_digits(user):
            raise ConfigError(UNKNOWN_USER_MSG % (where, user))
        name, uid, gid, home = user, int(user), int(user), "/"   # as runAsUser allows
    if group:
        try:
            gid = (grp.getgrgid(int(group)).gr_gid if _is_digits(group)
                   else grp.getgrnam(group).gr_gid)
        except KeyError:
            if not _is_digits(group):
                raise ConfigError(UNKNOWN_GROUP_MSG % (where, group))
            gid = int(group)
    try:
        groups = os.getgrouplist(name, gid)
    except (KeyError, OSError):
        groups = [gid]
    return _User(name, uid, gid, groups, home)


_devnull_fd = []


def _devnull():
    """One fd on /dev/null, opened on first use and kept, for children's stdin."""
    if not _devnull_fd:
        _devnull_fd.append(os.open(os.devnull, os.O_RDWR))
    return _devnull_fd[0]


def _spawn(argv, env, workdir=None, user=None, stdin=None, stdout=None, stderr=None,
           tty=False, reset=(signal.SIGPIPE, signal.SIGXFSZ), root=None):
    """fork and exec argv in a new session; (pid, fd of its exec report).

    Signals are blocked across fork so a signal meant for procwrap cannot run
    in the child before it has reset its handlers (the child would otherwise
    write into our wakeup fd); those in `reset` (the loop's handled_signals(),
    passed, not looked up: 60 getsignal() calls a spawn cost 0.5 ms) go back
    to their defaults.  The child reports a failed chdir, user switch
    or exec as 'stage:errno' on a CLOEXEC pipe, which reads empty on success
    (see _read_exec_report).  We do not wait for that here: forking a Python
    process costs milliseconds, and the next fork can overlap this exec.
    """
    parent = os.getpid()
    pdeathsig = parent != 1 and bool(_load_libc())     # load ctypes here, not in the child
    if tty:
        import fcntl
        import termios
    # The PATH search happens here, not in the child: os.execvpe imports
    # modules lazily on 3.6/3.7, which fails after a switch to a user who
    # cannot read the interpreter's library.  The child only calls execve.
    if os.path.dirname(argv[0]):
        candidates = [argv[0]]
    else:
        candidates = [os.path.join(d, argv[0]) for d in os.get_exec_path(env)]
    err_r, err_w = os.pipe()
    mask = _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        _sigmask(signal.SIG_SETMASK, mask)
        os.close(err_r)
        os.close(err_w)
        raise
    if pid == 0:
        stage = "setup"
        try:
            # The child shares our wakeup pipe until exec; detach it first.
            signal.set_wakeup_fd(-1)
            for signum in reset:
                signal.signal(signum, signal.SIG_DFL)
            # Nothing blocked, whatever procwrap inherited (dumb-init's choice;
            # tini restores the original mask): a child must hear its stop signal.
            _sigmask(signal.SIG_SETMASK, ())
            os.setsid()
            if tty:
                try:
                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                except OSError:
                    pass    # as dumb-init: the tty belongs to another session
            # dup2 makes the targets inheritable; every other fd of ours is
            # CLOEXEC (PEP 446), so exec leaves the child only 0, 1 and 2.
            for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
                if fd is not None:
                    os.dup2(fd, target)
            if root is not None:    # before the user switch: chroot needs root
                stage = "chroot"
                os.chroot(root)
                os.chdir("/")
            stage = "chdir"
            if workdir:
                os.chdir(workdir)
            stage = "user"
            if user is not None:
                os.setgroups(user.groups)
                os.setgid(user.gid)
                os.setuid(user.uid)
            # After setuid: changing credentials clears the parent-death signal.
            if pdeathsig:
                _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != parent:
                    os._exit(EX_SOFTWARE)      # procwrap died before prctl took effect
            stage = "exec"
            _exec_first(candidates, argv, env)
        except BaseException as error:
            code = getattr(error, "errno", 0) or 0
            try:
                os.write(err_w, ("%s:%d" % (stage, code)).encode())
            finally:
                os._exit(_SpawnError(stage, code).status)
        finally:
            os._exit(EX_NOEXEC)     # not reached: exec or the handler above ends us
    _sigmask(signal.SIG_SETMASK, mask)
    os.close(err_w)
    os.set_blocking(err_r, False)
    return pid, err_r


def _exec_first(candidates, argv, env):
    """execve the first candidate path that works, as execvp(3) would.

    A permission error wins over 'not found' in what is raised, so a command
    found but not executable is 126, not 127.
    """
    failure = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except OSError as error:
            if failure is None or failure.errno in (errno.ENOENT, errno.ENOTDIR):
                failure = error
    raise failure or OSError(errno.ENOENT, "not found")


def _spawn_vfork(argv, env, workdir=None, stdin=None, stdout=None, stderr=None):
    """Start argv through subprocess in a new session; the Popen, or _SpawnError.

    subprocess uses vfork on CPython >= 3.10 (plain fork in C before): about
    0.6 ms where os.fork of a 15-20 MB Python process costs 1-2 ms here, which
    is most of the time to start 500 children.  It runs no Python in the
    child, so it cannot set the parent-death signal: used only when procwrap
    is PID 1, where the kernel ends every process of the namespace with us.
    It blocks until exec, so a failure is known at once.  With vfork it blocks
    signals and resets handlers in the child; before 3.10 (fork in C) a signal
    sent to our process group in the microseconds before exec would also be
    seen by us, which as a container's PID 1 nobody sends.
    """
    import subprocess
    try:
        return subprocess.Popen(argv, env=env, cwd=workdir or None, stdin=stdin, stdout=stdout,
                                stderr=stderr, start_new_session=True, restore_signals=True,
                                close_fds=True)
    except OSError as error:
        stage = "chdir" if workdir and error.filename == workdir else "exec"
        raise _SpawnError(stage, error.errno or 0)


def _read_exec_report(fd):
    """None while the child has not exec'd yet; False once it has; a _SpawnError if it failed.

    The child writes its report in one write of a few bytes, so one read
    sees all of it; EOF with nothing means exec closed the pipe (CLOEXEC).
    """
    report = _read_some(fd, 64)
    if report is None:
        return None
    if not report:
        return False
    stage, _, code = report.decode("ascii", "replace").partition(":")
    return _SpawnError(stage, int(code) if code.isdigit() else 0)


def _spawn_quiet(argv, env, workdir=None, user=None, output=None,
                 reset=(signal.SIGPIPE, signal.SIGXFSZ)):
    """Start a probe or hook command in its own process group, stdin on
    /dev/null, stdout and stderr on `output` (an fd; /dev/null if None); its pid.

    Like every child, it gets the parent-death signal, so a procwrap killed
    with SIGKILL leaves no probe behind; that needs Python in the child, so
    a fork.  As PID 1 the namespace's end takes every process with us, and
    posix_spawn (a vfork in glibc) is used: about 0.05 ms of our CPU instead
    of 0.7 ms, which 50 probes a second would feel.
    """
    if output is None:
        output = _devnull()
    if os.getpid() == 1 and hasattr(os, "posix_spawn") and user is None and workdir is None:
        import shutil
        path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
        if path is None:
            raise OSError(errno.ENOENT, "command not found")
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
        return os.posix_spawn(path, argv, env, file_actions=actions, setpgroup=0,
                              setsigdef=reset, setsigmask=())
    pid, report = _spawn(argv, env, workdir, user, _devnull(), output, output, reset=reset)
    os.close(report)        # its exit status tells enough (126, 127)
    return pid


class _LocalChild(object):
    """A Process's command on this machine: forked in its own session (or
    started through vfork as PID 1), its exec report read from a CLOEXEC
    pipe, its stdout and stderr split into lines, its group signalled.

    What the state machine above sees: spawn() (raises _SpawnError), then
    on_exec(None, or the _SpawnError saying why exec failed) once, then
    on_exit(wait_status) once, after its output is drained.  A child on
    another machine offers the same four, so one state machine drives both
    (it may also call on_exec(error) while the command runs: a lost link).
    """
    pid = None              #: its pid while alive (the daemon's, once adopted)
    last_pid = None         #: the pid of the run that ended last, for messages
    pgid = None             #: process group to signal; kept after exit until ended

    def __init__(self, loop, on_exec, on_exit, sinks=None, max_line=MAX_LINE_BYTES):
        self.loop = loop                #: the Loop
        self.on_exec = on_exec          #: func(None or _SpawnError): exec'd, or why not
        self.on_exit = on_exit          #: func(wait_status): reaped, output drained
        self.sinks = sinks              #: (stdout, stderr) sinks; None: output passes through
        self.max_line = max_line        #: longest line before it is split
        self._pipes = []                #: our ends of its stdout and stderr
        self._report_fd = None          #: its exec report pipe, until read
        self._popen = None              #: the subprocess.Popen, when spawned by _spawn_vfork

    def spawn(self, argv, env, workdir=None, user=None, tty=False, root=None):
        """Start argv (in `root`, a chroot, if given); True when exec is still
        to be confirmed (on_exec follows), False when it is known to have
        happened.  Raises _SpawnError (stage 'fork' when fork itself failed:
        EAGAIN, ENOMEM)."""
        capture = self.sinks is not None
        ours, theirs = (), (None, None)     # read ends; the child's stdout, stderr
        if capture:
            out_r, out_w = os.pipe()
            ours, theirs = (out_r,), (out_w, out_w)
            if self.sinks[1] is not None:   # None: stderr into stdout's pipe, order kept
                err_r, err_w = os.pipe()
                ours, theirs = (out_r, err_r), (out_w, err_w)
            for fd in set(theirs):
                _set_pipe_size(fd)
        stdin = _devnull() if capture else None
        try:
            if os.getpid() == 1 and user is None and not tty and root is None:
                self._popen = _spawn_vfork(argv, env, workdir, stdin, *theirs)
                pid, report = self._popen.pid, None
            else:
                pid, report = _spawn(argv, env, workdir, user, stdin, theirs[0], theirs[1], tty,
                                     self.loop.handled_signals(), root)
        except (OSError, _SpawnError) as error:
            for fd in set(ours + theirs) - {None}:
                os.close(fd)
            if not isinstance(error, _SpawnError):
                error = _SpawnError("fork", error.errno or 0)
            raise error
        if capture:
            for fd in set(theirs):
                os.close(fd)
            # Output means the child has exec'd, so exec is confirmed first
            # even when its pipe is read before its exec report.
            self._pipes = [_Pipe(self.loop, fd, sink, self.max_line, self._before_output)
                           for fd, sink in zip(ours, self.sinks)]
        self.pid = self.pgid = pid
        self.loop.watch_child(pid, self._reaped)
        if report is None:
            return False
        self._report_fd = report
        self.loop.watch(report, _READ, self.on_exec_report)
        return True

    def _before_output(self):
        """Its first output is about to be logged: read the exec report first."""
        if self._report_fd is not None:
            self.on_exec_report()

    def on_exec_report(self):
        """The exec report pipe is readable: the child exec'd, or says why it could not."""
        if self._report_fd is None:
            return
        outcome = _read_exec_report(self._report_fd)
        if outcome is None:
            return
        self._close_report()
        self.on_exec(outcome or None)       # a failure exits 126/127 now; on_exit follows

    def _close_report(self):
        """Stop watching the exec report pipe and close it."""
        if self._report_fd is not None:
            self.loop.watch(self._report_fd, 0)
            os.close(self._report_fd)
            self._report_fd = None

    def _reaped(self, wait_status):
        """The loop reaped it: its exec report, then its output, then on_exit."""
        if self._report_fd is not None:
            # Reaped before its exec report was read (it exec'd and exited within
            # one loop pass): the report is complete now.  A successful exec
            # still counts as a start, for the log and for dependents.
            outcome = _read_exec_report(self._report_fd)
            self._close_report()
            self.on_exec(outcome or None)
        if self._popen is not None:
            # Reaped by us, not by subprocess: say so, or its __del__ would
            # queue the pid for subprocess._cleanup() to wait on.
            self._popen.returncode = _exit_status(wait_status)
            self._popen = None
        self.last_pid, self.pid = self.pid, None
        for pipe in self._pipes:
            pipe.drain()        # everything it wrote before exiting comes first
        self._pipes = []
        self.on_exit(wait_status)

    def reading(self, on):
        """Read its output, or leave it in the pipes for now (back-pressure)."""
        for pipe in self._pipes:
            if pipe.fd >= 0:
                self.loop.watch(pipe.fd, _READ if on else 0, pipe.on_readable)

    def signal(self, signum, group=True):
        """Send signum to its process group (or to it alone); quiet if gone."""
        try:
            if group and self.pgid is not None:
                os.killpg(self.pgid, signum)
            elif not group and self.pid is not None:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def end_group(self):
        """dumb-init's rule: what is left of its group goes with it.  The
        group id cannot have been reused yet: a group that still has members
        keeps its id, and an empty one gets ESRCH."""
        self.signal(signal.SIGTERM, group=True)
        self.pgid = None

    def adopt(self, pid_files):
        """The floating pid: a command that daemonized and exited well, leaving
        its pid in one of `pid_files`, is followed to that pid.  As subreaper
        (or PID 1) the daemon is our child, so its exit comes to on_exit like
        any other.  True when adopted."""
        for path in pid_files:
            try:
                with open(path) as stream:
                    pid = int(stream.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            fields = _proc_stat(pid)
            if fields is None or int(fields[1]) != os.getpid():
                continue
            self.pid, self.pgid = pid, int(fields[2])
            self.loop.watch_child(pid, self._reaped)
            return True
        return False

    def run_command(self, argv, env, workdir, user, on_done):
        """A short command beside this one (an exec probe or hook): a _LocalCommand."""
        return _LocalCommand(self.loop, argv, env, workdir, user, on_done)


class _Tail(object):
    """The last bytes of a stream, for messages: a failing probe's output,
    ssh's stderr.  A sink for a raw _Pipe (raw()), or fed directly."""

    def __init__(self, limit=OUTPUT_TAIL):
        self.limit = limit
        self.data = b""

    def raw(self, data):
        """Keep the end."""
        self.data = (self.data + data)[-self.limit:]

    def text(self):
        """All that is kept, as text."""
        return self.data.decode("utf-8", "replace")

    def last_line(self):
        """The last non-empty line, control characters out."""
        lines = [line.strip() for line in self.text().splitlines() if line.strip()]
        return _CONTROL_RE.sub("", lines[-1]) if lines else ""

    def first_line(self, prefix):
        """The first line that starts with `prefix`, control characters out; or ''."""
        for line in self.text().splitlines():
            if line.strip().startswith(prefix):
                return _CONTROL_RE.sub("", line.strip())
        return ""


class _LocalCommand(object):
    """A short command run beside a process (an exec probe or hook), in its
    own group with stdin on /dev/null; its stdout and stderr share one pipe
    read in the loop, of which the last OUTPUT_TAIL bytes are kept, as the
    kubelet keeps them for its event.  on_done(wait_status, output) once it
    is reaped; cancel() SIGKILLs its group.  A grandchild may hold the pipe
    for longer, so the command's exit, not EOF, ends it.  Raises OSError or
    _SpawnError when it cannot be started."""
    fd = -1                 #: read end of its output pipe, while open

    def __init__(self, loop, argv, env, workdir, user, on_done):
        self.loop = loop
        self.on_done = on_done          #: func(wait_status, output bytes)
        self.output = _Tail()           #: the last OUTPUT_TAIL bytes of its output
        read_end, write_end = os.pipe()
        try:
            self.pid = _spawn_quiet(argv, env, workdir, user, write_end,
                                    loop.handled_signals())
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.fd = read_end
        os.set_blocking(read_end, False)
        loop.watch(read_end, _READ, self.on_output)
        loop.watch_child(self.pid, self.on_exit)

    def on_output(self):
        """Keep the end of what it writes; False when nothing more is there now."""
        data = _read_some(self.fd)
        if data is None:
            return False
        if not data:
            self.close()
            return False
        self.output.raw(data)
        return True

    def on_exit(self, wait_status):
        """Reaped: what is buffered of its output, then on_done.  Reads are
        bounded: a grandchild still writing must not keep the loop here."""
        self.pid = None
        for _ in range(PIPE_READS_AT_EXIT):
            if self.fd < 0 or not self.on_output():
                break
        self.close()
        self.on_done(wait_status, self.output.data)

    def close(self):
        """Stop reading its output."""
        if self.fd >= 0:
            self.loop.watch(self.fd, 0)
            os.close(self.fd)
            self.fd = -1

    def cancel(self):
        """Timed out or stopped: SIGKILL to its group (reaped by the loop as usual)."""
        self.close()
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _proc_stat(pid):
    """The fields of /proc/PID/stat after the command name: [state, ppid, pgrp,
    ...] (utime and stime are [11] and [12]); None if gone or without /proc."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _is_zombie(pid):
    """Has pid exited but not been reaped (state Z in /proc)?  False where /proc is missing."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] == b"Z"


def _proc_usage(pid):
    """(CPU seconds, resident bytes) of a pid from /proc; (None, None) if unknown."""
    fields = _proc_stat(pid)
    try:
        with open("/proc/%d/statm" % pid, "rb") as stream:
            pages = int(stream.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None, None
    if fields is None:
        return None, None
    ticks = os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) / float(ticks),
            pages * os.sysconf("SC_PAGE_SIZE"))


def _group_rss(pgids):
    """{pgid: resident bytes of all its processes} for the groups in
    `pgids`, from one pass over /proc (one stat read a pid: its group and its
    RSS); {} where there is no /proc."""
    found = dict((pgid, 0) for pgid in pgids)
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    page = os.sysconf("SC_PAGE_SIZE")
    for name in names:
        fields = _proc_stat(name) if name.isdigit() else None
        if fields is None or len(fields) < 22:
            continue
        pgid = int(fields[2])
        if pgid in found:
            found[pgid] += int(fields[21]) * page
    return found


def _children_of(parent):
    """Pids whose parent is `parent`, from /proc (empty where there is no /proc)."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        fields = _proc_stat(name) if name.isdigit() else None
        if fields is not None and int(fields[1]) == parent and fields[0] != b"Z":
            found.append(int(name))
    return found


def _become_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphaned grandchildren are re-parented to us."""
    return os.getpid() == 1 or _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _sweep_children(loop):
    """Leave no orphan: SIGKILL the process group of every child we still
    have; [(pid, wait_status)] of each, reaped.

    Whatever is still our child at exit is ours to end: a group member
    that ignored SIGTERM, or an orphan re-parented to us.  Only children
    are swept, never remembered group ids, which the kernel may have
    handed to an unrelated process group since.  Then leave no zombie:
    wait for each (SIGKILL cannot be ignored, so the wait is short); the
    caller reaps whatever else has died since (loop.reap()).
    """
    swept = _children_of(os.getpid())
    for pid in swept:
        try:
            group = os.getpgid(pid)
            # A child that shares our own group (one our parent forked
            # before exec'ing procwrap) takes only itself: that group is
            # our parent's too.
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reaped = []
    for pid in swept:
        try:
            _, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:
            continue        # reaped already
        loop.children.pop(pid, None)
        reaped.append((pid, wait_status))
    return reaped


# =============================================================================
# Remote agent
# What runs on the other end of `procwrap remote`: Part I of this file, sent
# over ssh and compiled from memory (nothing is written there).  It speaks
# frames on its stdin and stdout, runs one command at a time for the local
# procwrap, and leaves nothing behind when the link goes.
# =============================================================================

#: Frame kinds on the channel: JSON control messages both ways (never pickle,
#: never eval), and a child's stdout and stderr as raw bytes.
FRAME_CONTROL, FRAME_STDOUT, FRAME_STDERR = 1, 2, 3
#: The largest frame either side takes: output comes in READ_SIZE pieces, but
#: a control message carries a child's environment, which may hold large
#: secrets.  A bigger one means the stream is not ours: the link is closed.
FRAME_MAX = 16 << 20
#: Seconds the agent gives its command between the stop signal and SIGKILL
#: when the link is gone (nobody is left to ask for a longer grace).
AGENT_GRACE = 5.0
#: Bytes of output queued for the link past which the agent stops reading
#: its commands' pipes, until half of it has gone: a slow reader at the other
#: end slows the commands (their pipes fill), as a slow stdout slows local
#: ones, instead of the agent's memory growing.
AGENT_BACKLOG = 1 << 20
#: Seconds a call's import waits for the local side's answer.
IMPORT_TIMEOUT = 60


class _Channel(_Stream):
    """Frames over a stream, both ways at once (duplex): on_frame(kind,
    payload) for each frame that arrives; send() and control() queue them.

    Before the first frame the other end may print anything (a banner, an rc
    file's echo): with `marker`, bytes are dropped until that line, then
    `payload` is sent, on_marker() is called, and frames begin (SPECS.md
    11.2)."""
    duplex = True
    on_marker = None        #: func() once the marker came and the payload is queued
    on_drained = None       #: func() once, when less than AGENT_BACKLOG / 2 is queued

    def __init__(self, loop, rfd, wfd, on_frame, on_closed, marker=None, payload=None):
        self.on_frame = on_frame        #: func(kind, payload)
        self.on_closed = on_closed      #: func() once, when the stream is closed
        self.marker = marker            #: the line that ends the noise, until seen
        self.payload = payload          #: what to send once the marker came
        _Stream.__init__(self, loop, rfd, wfd)

    def on_data(self):
        """Take the marker, or one frame, from the buffer."""
        if self.marker is not None:
            found = self.buffer.find(self.marker)
            if found < 0:
                # Noise: keep only what could be the start of the marker.
                self.buffer = self.buffer[-len(self.marker):]
                return False
            self.buffer, self.marker = self.buffer[found + len(self.marker):], None
            if self.payload is not None:
                self.queue(self.payload)
            if self.on_marker is not None:
                self.on_marker()
            return True
        try:
            frame = _take_frame(self.buffer, FRAME_MAX)
        except _TooLong:
            self.close()
            return False
        if frame is None:
            return False
        kind, payload, self.buffer = frame
        self.on_frame(kind, payload)
        return True

    def send(self, kind, payload):
        """Queue one frame."""
        self.queue(_frame(kind, payload))

    def on_writable(self):
        """Room to send: send; say when the backlog has gone down."""
        _Stream.on_writable(self)
        if self.on_drained is not None and len(self.out) < AGENT_BACKLOG // 2:
            drained, self.on_drained = self.on_drained, None
            drained()

    def control(self, message):
        """Queue one control message (a JSON object)."""
        import json
        self.send(FRAME_CONTROL, json.dumps(message, separators=(",", ":")).encode("utf-8"))

    def closed_by(self):
        """The stream is closed: tell the owner, once."""
        self.on_closed()


class _ChannelSink(object):
    """Where the agent's child output goes: each chunk, as it came, as a
    frame tagged with the child's id."""

    def __init__(self, agent, kind, ident):
        self.agent = agent
        self.kind = kind                #: FRAME_STDOUT or FRAME_STDERR
        self.tag = _tag(ident)

    def raw(self, data):
        """One chunk of output; past the backlog, the agent stops reading."""
        channel = self.agent.channel
        channel.send(self.kind, self.tag + data)
        if len(channel.out) > AGENT_BACKLOG and channel.on_drained is None:
            self.agent.reading(False)


def _tag(ident):
    """The 4 bytes that start an output frame: whose output it is."""
    return ident.to_bytes(4, "big")


def _to_wire(value):
    """A call's argument or result as JSON: bytes travel as {"$bytes": base64};
    tuples become lists.  TypeError for anything JSON has no word for."""
    if isinstance(value, (bytes, bytearray)):
        import base64
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_to_wire(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError("a dict key %r is not a string; JSON has only string keys"
                                % (key,))
        return {key: _to_wire(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError("a %s is not a JSON value (nor bytes)" % type(value).__name__)


def _from_wire(value):
    """The inverse of _to_wire."""
    if isinstance(value, list):
        return [_from_wire(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            import base64
            return base64.b64decode(value["$bytes"])
        return {key: _from_wire(item) for key, item in value.items()}
    return value


#: thread ident -> the id of the call that thread of the agent runs (its
#: prints, log records and imports are tagged with it).
_call_ids = {}


def _current_call():
    """The id of the call the current thread runs, or None."""
    import _thread
    return _call_ids.get(_thread.get_ident())


class _CallOutput(object):
    """sys.stdout or sys.stderr in the agent: what a call prints goes back
    tagged with its id; anything else goes to fd 2 (ssh's stderr), never to
    fd 1, which would corrupt nothing now (it is /dev/null) but be lost."""
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, agent, kind):
        self.agent = agent
        self.kind = kind

    def write(self, text):
        """Send it on, from whichever thread."""
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        ident = _current_call()
        if ident is None:
            os.write(2, data)
        elif data:
            self.agent.from_thread(self.agent.channel.send, self.kind, _tag(ident) + data)
        return len(text)

    def flush(self):
        """Nothing is held."""

    def isatty(self):
        """Never a terminal."""
        return False


class _Importer(object):
    """The agent's last import finder: a module its Python cannot find is
    asked of the local side, which answers with the source it would import
    (pure Python only), run from memory here.  Only in a call's thread."""

    def __init__(self, agent):
        self.agent = agent
        self.answers = {}       #: name -> [threading.Event, the module message]

    def find_spec(self, name, path=None, target=None):
        """Ask the local side; None when it has no source for `name` either."""
        if _current_call() is None:
            return None
        import threading
        answer = self.answers.setdefault(name, [threading.Event(), None])
        self.agent.from_thread(self.agent.channel.control, {"op": "import", "name": name})
        if not answer[0].wait(IMPORT_TIMEOUT):
            self.answers.pop(name, None)
            raise ImportError("procwrap: the local side did not answer for module %s within "
                              "%d s" % (name, IMPORT_TIMEOUT), name=name)
        module = self.answers.pop(name)[1]
        if module.get("source") is None:
            return None
        import importlib.util
        spec = importlib.util.spec_from_loader(name, self, origin=module["file"],
                                               is_package=module["package"])
        spec.procwrap_source = module["source"]
        return spec

    def answer(self, message):
        """The local side's word on a module (in the loop)."""
        answer = self.answers.get(message.get("name"))
        if answer is not None:
            answer[1] = message
            answer[0].set()

    def create_module(self, spec):
        """The default module object."""
        return None

    def exec_module(self, module):
        """Run the source; tracebacks show its lines (linecache is told)."""
        import linecache
        spec = module.__spec__
        source, filename = spec.procwrap_source, spec.origin
        module.__file__ = filename
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)


class _Agent(object):
    """The remote end: runs what the local procwrap asks, each thing under
    the id the local side gave it, and ends it all (stop signal, AGENT_GRACE,
    SIGKILL to each group) when the link goes: EOF on stdin, a silent link
    past `keepalive`, or a signal.

    Messages in: spawn {id, argv, env (added to the agent's own), workdir,
    user}, signal {id, signum, group}, command {id, argv, env, workdir,
    user} and cancel {id} (a short command: an exec probe), call {id,
    module, name, args, kwargs}, module {name, source, file, package} (the
    answer to an import), ping.  Out: ready {pid, python}, exec {id, pid,
    stage, errno, message}, exit {id, status: a wait status}, done {id,
    status, output}, result {id, value}, raised {id, type, message,
    traceback}, log {id, name, level, message}, import {name}, ping; and
    output frames, each tagged with its id (_tag).
    """
    ending = False          #: the link is gone: stop everything, then exit
    importer = None         #: the _Importer, once a call came

    def __init__(self, loop, keepalive, rfd=0, wfd=1):
        self.loop = loop
        self.keepalive = keepalive      #: seconds of silence that mean the link is gone
        self.children = {}              #: id -> _LocalChild
        self.commands = {}              #: id -> _LocalCommand
        self.channel = _Channel(loop, rfd, wfd, self.on_frame, self.on_lost)
        if keepalive:
            self._tick()

    def _tick(self):
        """Ping, and notice a silent link (a partition sends no EOF)."""
        if self.ending:
            return
        if self.loop.clock() - self.channel.received > self.keepalive:
            return self.on_lost()
        self.channel.control({"op": "ping"})
        self.loop.call_later(self.keepalive / 3.0, self._tick)

    def from_thread(self, func, *args):
        """func(*args) in the loop, from a call's thread."""
        self.loop.call_soon_threadsafe(func, *args)

    def on_frame(self, kind, payload):
        """A control message from the local procwrap."""
        import json
        if kind != FRAME_CONTROL or self.ending:
            return
        message = json.loads(payload.decode("utf-8"))
        op, ident = message.get("op"), message.get("id")
        if op == "spawn" and ident not in self.children:
            self.spawn(ident, message)
        elif op == "signal" and ident in self.children:
            self.children[ident].signal(message["signum"], message.get("group", True))
        elif op == "command" and ident not in self.commands:
            self.command(ident, message)
        elif op == "cancel" and ident in self.commands:
            self.commands[ident].cancel()
        elif op == "call":
            self.call(ident, message)
        elif op == "module" and self.importer is not None:
            self.importer.answer(message)

    def _setup(self, ident, message):
        """(env, user) of a spawn or command; None after saying why not."""
        env = dict(os.environ)
        user = message.get("user")
        if user is not None:
            try:
                user = _resolve_user(user, "--user")
            except ConfigError as error:
                self.channel.control({"op": "exec", "id": ident, "pid": None, "stage": "user",
                                      "errno": 0, "message": str(error)})
                return None
            env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
        env.update(message.get("env") or {})
        return env, user

    def spawn(self, ident, message):
        """Start a command, its output captured into frames."""
        setup = self._setup(ident, message)
        if setup is None:
            return self.channel.control({"op": "exit", "id": ident, "status": EX_NOEXEC << 8})
        sinks = (_ChannelSink(self, FRAME_STDOUT, ident), None if message.get("merge")
                 else _ChannelSink(self, FRAME_STDERR, ident))
        child = _LocalChild(self.loop, lambda error: self.on_exec(ident, error),
                            lambda status: self.on_exit(ident, status), sinks, None)
        self.children[ident] = child
        try:
            pending = child.spawn(message["argv"], setup[0], message.get("workdir"), setup[1])
        except _SpawnError as error:
            del self.children[ident]
            self.on_exec(ident, error, child)
            return self.channel.control({"op": "exit", "id": ident,
                                         "status": error.status << 8})
        if not pending:
            self.on_exec(ident, None)

    def on_exec(self, ident, error, child=None):
        """A command runs, or says why it could not."""
        child = child or self.children.get(ident)
        self.channel.control({"op": "exec", "id": ident, "pid": child.pid if child else None,
                              "stage": error.stage if error else None,
                              "errno": error.errno if error else None})

    def on_exit(self, ident, wait_status):
        """It ended: what is left of its group goes (dumb-init's rule), then say how."""
        self.children.pop(ident).end_group()
        self.channel.control({"op": "exit", "id": ident, "status": wait_status})
        self._maybe_done()

    def command(self, ident, message):
        """A short command (an exec probe): its status and the end of its output."""
        def done(wait_status, output):
            self.commands.pop(ident, None)
            self.channel.control({"op": "done", "id": ident, "status": wait_status,
                                  "output": output.decode("utf-8", "replace")})
            self._maybe_done()
        setup = self._setup(ident, message)
        if setup is None:
            return done(EX_NOEXEC << 8, b"")
        try:
            self.commands[ident] = _LocalCommand(self.loop, message["argv"], setup[0],
                                                 message.get("workdir"), setup[1], done)
        except (OSError, _SpawnError) as error:
            status = getattr(error, "status", EX_NOEXEC)
            done(status << 8, ("%s: %s" % (message["argv"][0], os.strerror(
                error.errno or errno.ENOENT))).encode())

    def call(self, ident, message):
        """Run a function in a thread of its own (it may block, print, log,
        import what only the local side has); its result or exception goes back."""
        if self.importer is None:
            if sys.flags.no_site:       # python -S: the agent itself needs no site
                import site
                site.main()             # a call may: its site-packages, .pth files
            self.importer = _Importer(self)
            sys.meta_path.append(self.importer)
            sys.stdout = _CallOutput(self, FRAME_STDOUT)
            sys.stderr = _CallOutput(self, FRAME_STDERR)
            _forward_logging(self)
        import threading
        threading.Thread(target=self._call, args=(ident, message), daemon=True,
                         name="procwrap-call-%d" % ident).start()

    def _call(self, ident, message):
        """The call's thread."""
        import _thread
        import importlib
        thread = _thread.get_ident()
        _call_ids[thread] = ident
        try:
            func = importlib.import_module(message["module"])
            for part in message["name"].split("."):
                func = getattr(func, part)
            value = func(*_from_wire(message.get("args") or []),
                         **_from_wire(message.get("kwargs") or {}))
            reply = {"op": "result", "id": ident, "value": _to_wire(value)}
        except BaseException as error:      # the caller's to judge, even SystemExit
            import traceback
            kind = type(error)
            reply = {"op": "raised", "id": ident, "message": str(error),
                     "type": kind.__name__ if kind.__module__ == "builtins"
                     else "%s.%s" % (kind.__module__, kind.__qualname__),
                     "traceback": traceback.format_exc()}
        del _call_ids[thread]
        self.from_thread(self.channel.control, reply)

    def reading(self, on):
        """Read the commands' output, or not until the backlog has gone down."""
        for child in self.children.values():
            child.reading(on)
        if not on:
            self.channel.on_drained = lambda: self.reading(True)

    def _maybe_done(self):
        """Ending, and nothing left running: the loop stops."""
        if self.ending and not self.children and not self.commands:
            self.loop.stopped = True

    def on_lost(self, signum=None):
        """The link is gone, or a signal came: stop everything, then exit."""
        if self.ending:
            return
        self.ending = True
        for command in list(self.commands.values()):
            command.cancel()
        for child in self.children.values():
            child.signal(signal.SIGTERM)
        self.loop.call_later(AGENT_GRACE, self._kill_all)
        self._maybe_done()

    def _kill_all(self):
        """The grace is over."""
        for child in self.children.values():
            child.signal(signal.SIGKILL)


def _forward_logging(agent):
    """Records a call logs go back tagged with its id (the root logger's
    handler; the level stays what the function sets)."""
    import logging

    class Forward(logging.Handler):
        def emit(self, record):
            ident = _current_call()
            if ident is None:
                return
            try:
                text = self.format(record)
            except Exception:
                text = str(record.msg)
            agent.from_thread(agent.channel.control, {
                "op": "log", "id": ident, "name": record.name, "level": record.levelno,
                "message": text})
    handler = Forward()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.WARNING and not root.handlers[:-1]:
        root.setLevel(logging.INFO)     # the local side's logging decides what shows


def _agent_main(keepalive):
    """The remote agent's life: a loop, the channel on copies of fds 0 and
    1 (which then point at /dev/null: a stray write to fd 1 by anything in
    this process cannot corrupt the frames), reaping as subreaper, until
    the link goes and all it started is gone."""
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    loop = _Loop()
    agent = _Agent(loop, keepalive, rfd, wfd)
    loop.add_signal_handler(signal.SIGCHLD, None)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, agent.on_lost)
    loop.on_orphan = lambda pid, wait_status: None     # reaped: nothing more to do
    _become_subreaper()
    agent.channel.control({"op": "ready", "pid": os.getpid(),
                           "python": "%d.%d.%d" % sys.version_info[:3]})
    loop.run()
    _sweep_children(loop)       # a grandchild that outlived its group: gone too
    # What is queued still goes out (the last exit message), within reason.
    deadline = time.monotonic() + AGENT_GRACE
    while agent.channel.out and not agent.channel.closed and time.monotonic() < deadline:
        import select
        select.select([], [wfd], [], 1.0)
        agent.channel.on_writable()
    os._exit(0)     # nothing is buffered: skip the interpreter's teardown (ms, at each end)


# #############################################################################
# Part II: local
# Policy: records, the process state machine, secrets, probes, configs, the
# supervisor and its control surface, the command line.
# #############################################################################


# =============================================================================
# Logging
# Child output and procwrap's own events as records on one fd: JSON, logfmt or
# text, with back-pressure, and never a record lost without saying so.
# =============================================================================


#: Bytes a chunk may hold and still take the fast path: everything but the
#: control characters other than newline, '"' and '\\' (and DEL for logfmt).
#: bytes.translate deletes them at about 0.5 ns a byte; a regex search takes 4.
_JSON_SAFE = bytes(b for b in range(256) if (b >= 0x20 or b == 0x0A) and b not in b'"\\')
_LOGFMT_SAFE = _JSON_SAFE.replace(b"\x7f", b"")
_ASCII = bytes(range(128))      #: deleted, what is left of a chunk is not ASCII
_COLORS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)
_LEVEL_ORDER = {"debug": 0, "info": 1, "warning": 2, "error": 3}


#: Fields of procwrap's records that hold its own identifiers, never secrets:
#: redaction leaves them alone.
_IDENTIFIER_FIELDS = frozenset(["name", "event", "probe", "hook", "result", "names",
                                "signal", "lease", "pid", "status"])


class _Log(object):
    """Writes every record procwrap emits to one file descriptor.

    `format` is json, logfmt, text, or none (wrap mode's pass-through, where
    only warnings and errors are written, as 'procwrap: ...' on stderr).
    """
    format = "json"         #: json | logfmt | text | none
    fd = 1                  #: where records go
    color = False           #: text format: colour names (stdout is a TTY)
    merge_json = False      #: merge child lines that are JSON objects
    broken = False          #: the fd cannot be written again (EPIPE): records are lost
    failing = None          #: why writes fail while records are dropped, or None
    lost = 0                #: records dropped since the last report
    midline = False         #: the last write stopped inside a record
    ring = None             #: a _Ring of procwrap's own records, for ctl maintail
    on_event = None         #: func(level, message, fields) for each own record (--events-udp)
    extra = {}              #: labels of each own record (--labels and kin)

    width = 0               #: text format: names padded to this many characters
    timestamps = False      #: text format: each line starts with HH:MM:SS
    labels = False          #: text format: a process's labels after its name

    def __init__(self, format="json", fd=1, merge_json=False, color=None, redact=None,
                 quiet=False, timestamps=False, labels=False):
        self.format = format
        self.quiet = quiet          #: own records: warnings and errors only, on stderr
        self.redact = redact or _Redactor()  #: blanks this run's secrets out of records
        self.fd = fd if format != "none" else 2
        self.merge_json = merge_json
        self.color = format == "text" and (_isatty(fd) if color is None else color)
        self.timestamps, self.labels = timestamps, labels
        self._colors = {}           #: name -> its colour: both streams of a process share it
        if format in ("json", "logfmt") or merge_json:
            import json
            self._json = json
            self._encode = json.encoder.encode_basestring

    def sink(self, process, stream, labels=None, ring=None, file=None, fmt=None, level=None):
        """A _Sink that turns one child stream's lines into records (and keeps
        them in `ring` for `procwrap ctl tail`, and writes them to `file`, a
        _LogFile, too), in `fmt` (the log's format by default), each with
        the `level` that func(line) finds, if given."""
        return _Sink(self, process, stream, labels or {}, ring, file, fmt, level)

    def color_of(self, name):
        """The ANSI colour of a process's name in text format (one a process)."""
        if name not in self._colors:
            self._colors[name] = _COLORS[len(self._colors) % len(_COLORS)]
        return self._colors[name]

    def event(self, message, level="info", **fields):
        """One record of procwrap's own: process=procwrap, a level, a message, fields.

        A resolved secret in the message or a field shows as [secret].
        """
        redact = self.redact
        if redact.values:
            message = redact(message)
            fields = dict((k, v if k in _IDENTIFIER_FIELDS else redact(v))
                          for k, v in fields.items())
        if self.extra:
            fields = dict(self.extra, **fields)
        if self.on_event is not None:
            self.on_event(level, message, fields)
        if self.format == "none" or self.quiet:
            # Pass-through (wrap mode), or only the child's lines on stdout
            # (procwrap remote's `host | line`): procwrap speaks on stderr.
            if _LEVEL_ORDER[level] >= _LEVEL_ORDER["warning"]:
                line = ("procwrap: %s\n" % _printable(message)).encode("utf-8", "replace")
                if self.fd == 2:
                    self.write(line)
                else:
                    _stderr(_printable(message))
            return
        stamp = _rfc3339(time.time())
        if self.format == "json":
            record = {"time": stamp, "process": "procwrap", "level": level, "message": message}
            record.update(fields)
            line = self._json.dumps(record, ensure_ascii=False, separators=(",", ":"),
                                    default=str) + "\n"
        elif self.format == "logfmt":
            parts = ["time=" + stamp, "process=procwrap", "level=" + level,
                     'msg="%s"' % _logfmt_escape(message)]
            parts.extend("%s=%s" % (_logfmt_key(k), _logfmt_value(v)) for k, v in fields.items())
            line = " ".join(parts) + "\n"
        else:
            name = "procwrap".ljust(self.width)
            word = level + ": " if level in ("warning", "error") else ""
            if self.color:
                if word:        # what needs a look stands out: yellow, red
                    word = "\x1b[%dm%s\x1b[0m" % (33 if level == "warning" else 31, word)
                name = "\x1b[1m%s |\x1b[0m" % name
            else:
                name += " |"
            stamp = time.strftime("%H:%M:%S ") if self.timestamps else ""
            line = "%s%s %s%s\n" % (stamp, name, word, _printable(message))
        data = line.encode("utf-8", "replace")
        if self.ring is not None:
            self.ring.add("procwrap", data[:-1])
        self.write(data)

    def write(self, data):
        """Write all of `data` (whole records), whatever it takes, and never
        lose a record without saying so.

        A full pipe (EAGAIN on a non-blocking fd) is waited out: that stalls
        the loop, and through their pipes the children, which is the
        back-pressure we want.  A full disk (ENOSPC, EDQUOT) is waited out too,
        up to LOG_STALL seconds; then records are dropped and counted until a
        write works again, which writes how many were lost.  A reader gone
        for good (EPIPE and the like) loses every record from then on; stderr
        says so at once and gives the count at exit (close()).
        """
        if self.broken:
            self.lost += data.count(b"\n")
            return
        if self.failing is not None:
            if not self._write_once(data):
                self.lost += data.count(b"\n")
                return
            return self._recovered()
        waited, delay = 0.0, 0.05
        while data:
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                # A non-blocking stdout (someone gave us one): wait for room.
                import select
                select.select([], [self.fd], [])
                continue
            except OSError as error:
                _inflicted(error)
                if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                    return self._give_up(error, data)
                if waited >= LOG_STALL:
                    self.failing = error.strerror
                    self.lost += data.count(b"\n")
                    return _stderr(LOG_DROPPING_MSG % (error.strerror, LOG_STALL))
                if not waited:
                    _stderr(LOG_WAITING_MSG % error.strerror)
                time.sleep(delay)
                waited, delay = waited + delay, min(delay * 2, 1.0)
                continue
            self.midline = written < len(data)
            data = data[written:]
        if waited:
            _stderr(LOG_RESUMED_MSG % _format_seconds(round(waited, 1)))

    def _write_once(self, data):
        """One attempt while records are being dropped: True if all of it went."""
        payload = (b"\n" if self.midline else b"") + data    # end a record cut short
        try:
            written = os.write(self.fd, payload)
        except BlockingIOError:
            return False
        except OSError as error:
            _inflicted(error)
            return False
        self.midline = False
        if written < len(payload):
            self.write(payload[written:])
        return True

    def _recovered(self):
        """Writes work again after records were dropped: say how many."""
        lost, reason = self.lost, self.failing
        self.lost, self.failing = 0, None
        message = LOG_LOST_MSG % (_plural(lost, "record"), reason)
        _stderr(message)
        self.event(message, "warning", event="log-lost", lost=lost)

    def _give_up(self, error, data):
        """The fd cannot be written again (EPIPE, EBADF, ...): count what is lost."""
        self.broken = True
        self.failing = error.strerror
        self.lost += data.count(b"\n")
        if self.fd != 2:
            _stderr(LOG_BROKEN_MSG % error.strerror)

    def close(self):
        """At exit: if records were lost, say how many (on stderr)."""
        if self.lost:
            _stderr(LOG_LOST_MSG % (_plural(self.lost, "record"), self.failing))
            self.lost = 0


class _LogFile(object):
    """A process's own log file (logs.file): its records, appended; rotated
    before a write would take it past max_bytes (at a record's end: a file
    holds whole records, at most max_bytes of them unless one record alone
    is longer), PATH -> PATH.1 -> ... -> PATH.backups; reopened on
    `procwrap ctl reopen-logs` (for logrotate).

    The loop writes: records of one pass are gathered and written in one
    write() at the end of it (a regular file's write lands in the page
    cache; nothing waits on a reader).  PATH and PATH.1..N are procwrap's by
    the config; a symlink or anything but a regular file of procwrap's user
    at one of those names is never written, followed or replaced.
    """
    fd = None
    size = 0
    failing = None          #: why the last write or rotation failed (said once)
    lost = 0                #: records not written since, counted

    def __init__(self, loop, log, path, max_bytes=LOG_FILE_MAX_BYTES, backups=LOG_FILE_BACKUPS,
                 where="logs.file"):
        self.loop = loop
        self.log = log                  #: procwrap's own records, to say what failed
        self.path = path
        self.max_bytes = max_bytes      #: 0: never rotated
        self.backups = backups          #: rotated files kept; 0: truncated instead
        self.where = where
        self.pending = []               #: records of this pass, written by flush()
        self._timer = None
        self.open(initial=True)

    def open(self, initial=False):
        """Open PATH for appending (created 0640); at start, UsageError if it cannot be."""
        import stat
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o640)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file")
        except (OSError, ValueError) as error:
            message = "%s: cannot open %r: %s" % (self.where, self.path, _read_error(error))
            if initial:
                raise UsageError(message + "; fix the path")
            return self._failed(message)
        self.close()
        self.fd, self.size = fd, info.st_size

    def write(self, data):
        """Records (whole lines) for the file, written at the end of this pass."""
        self.pending.append(data)
        if self._timer is None:
            self._timer = self.loop.call_later(0, self.flush)

    def flush(self):
        """Write what this pass gathered, rotating where a record would cross max_bytes."""
        self._timer = None
        data, self.pending = b"".join(self.pending), []
        if self.fd is None:
            self.lost += data.count(b"\n")
            return
        while data:
            cut = len(data)
            if self.max_bytes and self.size + cut > self.max_bytes:
                cut = data.rfind(b"\n", 0, max(0, self.max_bytes - self.size)) + 1
                if cut == 0 and self.size == 0:         # one record longer than a file
                    cut = data.find(b"\n") + 1 or len(data)
                if cut and not self._put(data[:cut]):
                    return self._drop(data[cut:])
                data = data[cut:]
                if not self.rotate():
                    return self._drop(data)
                continue
            if not self._put(data):
                return
            data = b""

    def _put(self, data):
        """Append `data`; False (said, counted) if it cannot be."""
        try:
            while data:
                written = os.write(self.fd, data)
                self.size += written
                data = data[written:]
        except OSError as error:
            _inflicted(error)
            self._failed("%s: cannot write %r: %s" % (self.where, self.path, error.strerror))
            return self._drop(data)
        if self.failing is not None:
            self.log.event("%s: writing %s again (%s lost)" % (
                self.where, self.path, _plural(self.lost, "record")), "warning",
                event="log-file", path=self.path, lost=self.lost)
            self.failing, self.lost = None, 0
        return True

    def _drop(self, data):
        self.lost += data.count(b"\n")
        return False

    def _failed(self, message):
        """Say once what fails; records are counted until a write works again."""
        if self.failing is None:
            self.failing = message
            self.log.event(message + "; its records are counted, not written, until it works",
                           "error", event="log-file", path=self.path)

    def rotate(self):
        """PATH.N-1 -> PATH.N ... PATH -> PATH.1, then a new PATH (with no
        backups: PATH emptied).  False when a name is not procwrap's to replace."""
        import stat
        if self.backups:
            names = [self.path] + ["%s.%d" % (self.path, n) for n in range(1, self.backups + 1)]
            for name in names[1:]:
                try:
                    info = os.lstat(name)
                except FileNotFoundError:
                    continue
                except OSError:
                    info = None
                if info is None or not stat.S_ISREG(info.st_mode) \
                        or info.st_uid != os.geteuid():
                    self._failed("%s: %s is not a file of procwrap's; not rotating over it, "
                                 "remove it" % (self.where, name))
                    return False
            try:
                for older, newer in reversed(list(zip(names[1:], names[:-1]))):
                    if os.path.lexists(newer):
                        os.rename(newer, older)
            except OSError as error:
                self._failed("%s: cannot rotate %r: %s"
                             % (self.where, self.path, error.strerror))
                return False
            self.open()
        else:
            try:
                os.ftruncate(self.fd, 0)
                self.size = 0
            except OSError as error:
                self._failed("%s: cannot empty %r: %s"
                             % (self.where, self.path, error.strerror))
                return False
        return self.fd is not None

    def reopen(self):
        """procwrap ctl reopen-logs: what is pending goes to the old file, then PATH anew."""
        self.flush()
        self.open()

    def end(self):
        """The run is over (or the process gone from the config): write, close."""
        self.flush()
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _EventSender(object):
    """--events-udp: a JSON datagram per lifecycle event to a collector, from
    a non-blocking UDP socket; a datagram that cannot go (no room, ICMP
    refusal, no route) is counted, never waited for, never fatal."""
    EVENTS = ("started", "exited", "backoff", "fatal", "unhealthy", "memory-limit",
              "preempted", "containers-terminated", "shutdown", "exit")
    sent = 0
    dropped = 0

    def __init__(self, address, labels=None):
        import socket
        host, _, port = address.rpartition(":")
        family, kind, proto, _, target = socket.getaddrinfo(
            host.strip("[]") or "127.0.0.1", int(port), 0, socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(family, kind, proto)
        self.sock.setblocking(False)
        self.target = target
        self.labels = labels or {}      #: added to every datagram

    def __call__(self, level, message, fields):
        event = fields.get("event")
        if event not in self.EVENTS and not (event == "probe" and fields.get("result")
                                             == "failed"):
            return
        import json
        record = dict(self.labels, time=_rfc3339(time.time()), level=level,
                      message=message[:EVENT_MESSAGE_MAX])
        record.update(fields)
        try:
            self.sock.sendto(json.dumps(record, default=str, separators=(",", ":")).encode(
                "utf-8", "replace"), self.target)
            self.sent += 1
        except OSError as error:
            _inflicted(error)
            self.dropped += 1

    def close(self):
        self.sock.close()


def _stderr(line):
    """One line of procwrap's own on stderr, whatever state stderr is in."""
    try:
        os.write(2, ("procwrap: %s\n" % line).encode("utf-8", "replace"))
    except OSError as error:
        _inflicted(error)


class _Ring(object):
    """A process's recent output for `procwrap ctl tail`: whole chunks of
    lines, up to TAIL_BYTES, the oldest dropped; followers see each chunk."""

    def __init__(self, limit=None):
        import collections
        self.limit = limit or TAIL_BYTES
        self.chunks = collections.deque()   #: (stream, bytes of lines joined by newlines)
        self.size = 0
        self.followers = []                 #: func(stream, data) for `tail -f`

    def add(self, stream, data):
        """Keep a chunk (dropping the oldest past the limit) and pass it to followers."""
        self.chunks.append((stream, data))
        self.size += len(data)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft()[1])
        for follower in self.followers:
            follower(stream, data)

    def lines(self, count, only=None):
        """The last `count` lines as [(stream, text)] (of stream `only`, if given)."""
        result = []
        if count <= 0:
            return result
        for stream, data in reversed(self.chunks):
            if only is not None and stream != only:
                continue
            for line in reversed(data.split(b"\n")):
                result.append((stream, line.decode("utf-8", "replace")))
                if len(result) >= count:
                    return result[::-1]
        return result[::-1]


def _valid_utf8(data):
    """`data` with invalid UTF-8 as U+FFFD, as every format shows it; only a
    chunk that is not all ASCII is decoded (text format stays bytes)."""
    if data.translate(None, _ASCII):
        return data.decode("utf-8", "replace").encode("utf-8")
    return data


def _text_name(name, labels, with_labels):
    """A process as text format names it: its name, and its labels when asked."""
    if not with_labels or not labels:
        return name
    return name + "".join(" %s=%s" % item for item in sorted(labels.items()))


class _Sink(object):
    """Formats the lines of one (process, stream) pair; pieces of a head are precomputed."""
    __slots__ = ("log", "format", "fixed", "head", "process", "stream", "labels", "ring", "file",
                 "plain", "piece_head", "piece_plain", "level", "encode")

    def __init__(self, log, process, stream, labels, ring=None, file=None, fmt=None,
                 level=None):
        self.log = log                  #: the Log written to
        self.ring = ring                #: a _Ring of recent output, or None
        self.file = file                #: the process's _LogFile, or None
        self.plain = None               #: text format: the head without colour, for the file
        self.format = fmt or log.format     #: its own (logs.format), or the log's
        self.level = level              #: func(line) -> its record's level, or None
        if self.format in ("json", "logfmt") or log.merge_json:
            import json
            self.encode = json.encoder.encode_basestring
        self.process = process          #: name, for the slow paths
        self.stream = stream            #: stdout | stderr
        self.labels = labels            #: extra fields of every record
        if self.format == "json":
            encode = self.encode
            self.fixed = '"process":%s,"stream":"%s",%s' % (encode(process), stream, "".join(
                "%s:%s," % (encode(k), encode(v)) for k, v in sorted(labels.items())))
        elif self.format == "logfmt":
            self.fixed = " process=%s stream=%s %s" % (_logfmt_value(process), stream, "".join(
                "%s=%s " % (_logfmt_key(k), _logfmt_value(v)) for k, v in sorted(labels.items())))
        else:
            # 'web    | line', 'web    ! line' from stderr, 'web    + ' a piece of a long
            # line; the name padded to the longest, its labels after it when asked.
            name = _text_name(process, labels, log.labels).ljust(log.width)
            bar = " !" if stream == "stderr" else " |"
            self.plain = (name + bar + " ").encode("utf-8")
            self.piece_plain = (name + " + ").encode("utf-8")
            self.head, self.piece_head = self.plain, self.piece_plain
            if log.color and log.format == "text":
                color = log.color_of(process)
                self.head = ("\x1b[%dm%s%s\x1b[0m " % (color, name, bar)).encode("utf-8")
                self.piece_head = ("\x1b[%dm%s +\x1b[0m " % (color, name)).encode("utf-8")
            self.fixed = name

    def lines(self, data):
        """Records for `data`: complete lines joined by b'\\n', without the last newline."""
        if self.ring is not None:
            self.ring.add(self.stream, data)    # one call a chunk, not a line
        fmt = self.format
        if fmt == "text":
            data = _valid_utf8(data)        # bytes in, bytes out
            head, plain, lines = self.head, self.plain, data.split(b"\n")
            if self.log.timestamps:
                stamp = time.strftime("%H:%M:%S ").encode("ascii")
                head, plain = stamp + head, stamp + plain
            self.log.write(head + (b"\n" + head).join(lines) + b"\n")
            if self.file is not None:       # the same, without colour
                self.file.write(plain + (b"\n" + plain).join(lines) + b"\n")
            return
        text = data.decode("utf-8", "replace")
        stamp = _rfc3339(time.time())
        if self.level is not None and fmt in ("json", "logfmt"):
            out = "".join(self._leveled(line, stamp) for line in text.split("\n"))
        elif fmt == "json":
            head = '{"time":"' + stamp + '",' + self.fixed + '"message":"'
            if self.log.merge_json and "{" in text:
                out = "".join(self._json_line(line, stamp, head) for line in text.split("\n"))
            elif not data.translate(None, _JSON_SAFE):
                # The common case: nothing to escape, so a chunk of lines
                # becomes records with one join (about 10x a json.dumps a line).
                out = head + ('"}\n' + head).join(text.split("\n")) + '"}\n'
            else:
                encode = self.encode
                out = "".join(head + encode(line)[1:-1] + '"}\n' for line in text.split("\n"))
        else:
            head = "time=" + stamp + self.fixed + 'msg="'
            if not data.translate(None, _LOGFMT_SAFE) and "\ufffd" not in text:
                out = head + ('"\n' + head).join(text.split("\n")) + '"\n'
            else:
                out = "".join(head + _logfmt_escape(line) + '"\n' for line in text.split("\n"))
        self._write(out.encode("utf-8", "replace"))

    def _write(self, data):
        """Records to the log, and to the process's log file."""
        self.log.write(data)
        if self.file is not None:
            self.file.write(data)

    def piece(self, data):
        """A record for part of an over-long line, marked so a reader can join it up."""
        if self.ring is not None:
            self.ring.add(self.stream, data)
        fmt = self.format
        if fmt == "text":
            data = _valid_utf8(data)
            # 'name + piece': more of this line follows
            stamp = time.strftime("%H:%M:%S ").encode("ascii") if self.log.timestamps else b""
            self.log.write(stamp + self.piece_head + data + b"\n")
            if self.file is not None:
                self.file.write(stamp + self.piece_plain + data + b"\n")
            return
        text = data.decode("utf-8", "replace")
        stamp = _rfc3339(time.time())
        if fmt == "json":
            out = '{"time":"%s",%s"partial":true,"message":%s}\n' % (
                stamp, self.fixed, self.encode(text))
        else:
            out = 'time=%s%spartial=true msg="%s"\n' % (stamp, self.fixed, _logfmt_escape(text))
        self._write(out.encode("utf-8", "replace"))

    def _leveled(self, line, stamp):
        """A record for one line, with the level found in it (logs.level: auto)."""
        level = self.level(line)
        if self.format == "logfmt":
            return 'time=%s%s%smsg="%s"\n' % (stamp, self.fixed, "level=%s " % level
                                              if level else "", _logfmt_escape(line))
        if self.log.merge_json and line.startswith("{") and line.endswith("}"):
            return self._json_line(line, stamp, '{"time":"%s",%s"message":"' % (
                stamp, self.fixed))
        return '{"time":"%s",%s%s"message":%s}\n' % (
            stamp, self.fixed, '"level":"%s",' % level if level else "", self.encode(line))

    def _json_line(self, line, stamp, head):
        """A record for one line, merging it when it is a JSON object (logs.mergeJson)."""
        if line.startswith("{") and line.endswith("}"):
            try:
                parsed = self.log._json.loads(line)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                record = dict(parsed)
                record.update(self.labels)
                record.update(time=stamp, process=self.process, stream=self.stream)
                return self.log._json.dumps(record, ensure_ascii=False,
                                            separators=(",", ":")) + "\n"
        return head + self.encode(line)[1:-1] + '"}\n'


# =============================================================================
# Processes
# The Process state machine that starts, stops, restarts and gives up, over a
# child (local now; remote later) and an environment that can be refreshed.
# =============================================================================


class _State(object):
    """The states of a Process.  Strings, so logs and metrics print them."""
    STOPPED = "stopped"     #: not running and not wanted (the start, and after stop())
    WAITING = "waiting"     #: wanted, but a dependsOn process is not running yet
    STARTING = "starting"   #: forked; exec not confirmed yet
    RUNNING = "running"     #: the child has exec'd its command
    BACKOFF = "backoff"     #: exited; a timer will start it again
    STOPPING = "stopping"   #: stop signal sent; SIGKILL when the grace ends
    EXITED = "exited"       #: ended and its restartPolicy wants no restart
    FATAL = "fatal"         #: gave up restarting (backoff.limit), or cannot start
    ALIVE = (STARTING, RUNNING, STOPPING)
    PENDING = (WAITING, BACKOFF)
    DONE = (EXITED, FATAL)


_TRANSITIONS = {
    _State.STOPPED: (_State.WAITING, _State.STARTING, _State.BACKOFF, _State.EXITED, _State.FATAL),
    _State.WAITING: (_State.STARTING, _State.BACKOFF, _State.EXITED, _State.FATAL, _State.STOPPED),
    _State.STARTING: (_State.RUNNING, _State.STOPPING, _State.BACKOFF, _State.EXITED, _State.FATAL),
    _State.RUNNING: (_State.STOPPING, _State.BACKOFF, _State.EXITED, _State.FATAL),
    _State.BACKOFF: (_State.STARTING, _State.BACKOFF, _State.EXITED, _State.FATAL, _State.STOPPED),
    _State.STOPPING: (_State.STOPPED, _State.BACKOFF, _State.EXITED, _State.FATAL),
    _State.EXITED: (_State.STARTING,),    # procwrap ctl start
    _State.FATAL: (_State.STARTING,),
}


def _spawn_error_message(name, argv, workdir, user, error):
    """What a user reads when a command could not be started."""
    if getattr(error, "message", None):
        return error.message            # a _LinkError says it all, host first
    if error.stage == "exec" and error.errno == errno.ENOENT:
        return NOT_FOUND_MSG % (name, argv[0])
    what = {"chroot": ("change its root", "(chroot)"), "chdir": ("change directory to", workdir),
            "user": ("switch to user", user.name if user else "?"),
            "exec": ("execute", argv[0])}.get(error.stage, ("set up", argv[0]))
    return CANNOT_RUN_MSG % (name, what[0], what[1], os.strerror(error.errno) if error.errno
                             else "unknown error")


class _Environment(object):
    """A process's environment: what its entry resolved, resolved again at a
    start once older than --secrets-ttl (`stale`), and what procwrap points
    the child at on top (its notify socket, the status socket)."""

    def __init__(self, spec, clock):
        self.values = spec.env          #: the entry's variables, secrets resolved
        self.rebuild = spec.make_env    #: func() -> values from a new resolution pass, or None
        self.ttl = spec.secrets_ttl     #: seconds the values stay fresh, or None: for good
        self.overrides = {}             #: name -> value (None: removed) at each start
        self.clock = clock
        self.since = clock()            #: when the values were resolved

    def stale(self):
        """Are the values older than the TTL (and can they be resolved again)?"""
        return (self.rebuild is not None and self.ttl is not None
                and self.clock() - self.since >= self.ttl)

    def refresh(self):
        """Resolve the values again (raises ProcwrapError, values unchanged)."""
        self.values = self.rebuild()
        self.since = self.clock()

    def override(self, overrides):
        """Variables that procwrap sets (a value) or takes away (None) at each
        start; only kept when one changes something."""
        if any(name in self.values for name in overrides) or any(overrides.values()):
            self.overrides = overrides

    def for_child(self):
        """The environment a new instance gets."""
        if not self.overrides:
            return self.values
        env = dict(self.values)
        for name, value in self.overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


class _Process(object):
    """One supervised command and its state machine.

        stopped  --start-->   starting  --exec'd-->  running
        stopped  --wait-->    waiting     (dependsOn not satisfied yet)
        running  --stop-->    stopping  --reaped-->  stopped
        running  --reaped-->  backoff   --timer-->   starting
                              exited      (restartPolicy says no more)
                              fatal       (backoff.limit reached)
        running  --terminate, timeout-->  stopping  --reaped-->  as running
        starting --reaped-->  as running (a failed exec is an exit, 126/127)
        waiting, backoff --stop--> stopped
        exited, fatal, stopped --start(manual)--> starting

    While stopping, for whatever reason, it is neither ready nor probed.

    The owner is told of every change through on_change(process, old_state).
    """
    state = _State.STOPPED   #: one of State
    status = None           #: shell-style status of the last exit
    restarts = 0            #: consecutive restarts, for backoff; reset by uptime
    starts = 0              #: how many times it was started
    started_at = None       #: monotonic time of the last start
    timed_out = False       #: the last attempt hit spec.timeout
    description = None      #: how the last run ended, for messages ('exited with status 3')
    delay = None            #: seconds until the restart, while in BACKOFF
    hold = False            #: no more restarts (procwrap is stopping)
    early = False           #: the last run ended before startSeconds: a failed start
    memory_kills = 0        #: runs stopped for going over its memoryLimit
    _for_good = False       #: the STOPPING in progress ends in STOPPED (stop())
    _stopping_since = None  #: loop time the last stop began, for messages

    def __init__(self, spec, loop, log, on_change, max_line=MAX_LINE_BYTES,
                 child_class=_LocalChild):
        self.spec = spec                #: the ProcessSpec
        self.loop = loop                #: the Loop
        self.log = log                  #: the Log
        self.on_change = on_change      #: func(process, old_state)
        self.max_line = max_line        #: longest log line before it is split
        self._restart_timer = None      #: armed in BACKOFF
        self._kill_timer = None         #: armed in STOPPING
        self._timeout_timer = None      #: armed while running with spec.timeout
        self.environment = _Environment(spec, loop.clock)   #: what the child is given
        self.keep_group = spec.keep_group   #: leave its group alone when it exits
        self.before_stop = None         #: func(process, then): a preStop hook, then then()
        #: func(process, wait_status, then): its finish command after an exit, then then()
        self.after_exit = None
        #: func(process, go) before each spawn (the API server's word on the
        #: run): go(None) spawns, go(status) fails the start with that status
        self.gate = None
        self.gating = False             #: the gate has not answered yet
        self._hook_ran = False          #: before_stop already ran for this instance
        self.ring = None                #: its recent output, for ctl tail
        self.log_file = None            #: its _LogFile (logs.file), or None
        sinks = None
        if spec.capture:
            self.ring = _Ring()
            if spec.log_file:
                self.log_file = _LogFile(loop, log, spec.log_file, spec.log_max_bytes,
                                         spec.log_backups, spec.where + ".logs.file")
            stdout_level = stderr_level = (_detect_severity if spec.log_level == "auto"
                                           else None)
            if spec.stderr_level:       # a stderr line that states no level has this one
                def stated_or_default(line):
                    return stdout_level and stdout_level(line) or spec.stderr_level
                stderr_level = stated_or_default
            fmt = spec.log_format if log.format != "none" else None
            sinks = (log.sink(spec.name, "stdout", spec.labels, self.ring, self.log_file, fmt,
                              stdout_level),
                     None if spec.merge_stderr     # one pipe: stderr goes to stdout's
                     else log.sink(spec.name, "stderr", spec.labels, self.ring,
                                   self.log_file, fmt, stderr_level))
        #: the command's mechanics: a _LocalChild, or one on another machine
        self.child = child_class(loop, self._on_exec, self.finish, sinks, max_line)

    @property
    def pid(self):
        """The child's pid while alive."""
        return self.child.pid

    @property
    def pgid(self):
        """The process group signals go to (= the pid; kept until the group is ended)."""
        return self.child.pgid

    @property
    def name(self):
        """The spec's name."""
        return self.spec.name

    @property
    def restarts_total(self):
        """Starts after the first, ever (`restarts` is the current crash loop's count)."""
        return max(0, self.starts - 1)

    def _set_state(self, new):
        """Move to `new` if _TRANSITIONS allows it (else it is our bug), then tell the owner."""
        old = self.state
        if new not in _TRANSITIONS[old]:
            raise RuntimeError("%s: illegal transition %s -> %s" % (self.name, old, new))
        self.state = new
        self.on_change(self, old)

    def wait(self):
        """STOPPED -> WAITING: wanted, but its dependencies are not running yet."""
        self._set_state(_State.WAITING)

    def start(self, manual=False):
        """STOPPED, WAITING, BACKOFF, EXITED or FATAL -> STARTING; RUNNING once exec
        is confirmed.  `manual` (procwrap ctl) forgets the crash loop and any
        earlier stop: its restartPolicy applies again."""
        if manual:
            self.hold, self.restarts = False, 0
        self._cancel("_restart_timer")
        self.timed_out = False
        self._hook_ran = False
        self.started_at = self.loop.clock()
        if self.starts and not self._refresh_env():
            # Its secrets could not be resolved again: a failed start, as a
            # failed fork is, so restartPolicy and backoff apply.
            self.status = EX_UNAVAILABLE
            self.description = "could not resolve its secrets (status %d)" % EX_UNAVAILABLE
            self._after_exit(EX_UNAVAILABLE)
            return
        if self.gate is not None:
            if not self.gating:
                self.gating = True
                self.gate(self, self._gated)
            return
        self._spawn()

    def _gated(self, refused):
        """The gate's word: spawn; or this start fails with `refused`; or,
        stopped meanwhile for good, nothing."""
        self.gating = False
        if refused is not None:
            self.status = refused
            self.description = "not started: its API server said no (status %d)" % refused
            self._after_exit(refused)
        elif not (self.hold and self.state == _State.STOPPED):
            self._spawn()

    def _spawn(self):
        """Fork and exec, then STARTING (RUNNING once exec is confirmed)."""
        spec = self.spec
        try:
            if spec.chroot is not None:     # only ever a local child (config says)
                pending = self.child.spawn(spec.argv, self.environment.for_child(),
                                           spec.workdir, spec.user, spec.tty, spec.chroot)
            else:
                pending = self.child.spawn(spec.argv, self.environment.for_child(),
                                           spec.workdir, spec.user, spec.tty)
        except _SpawnError as error:
            self._report_failure(error)
            self.status = error.status
            self.description = ("could not fork (status %d)" % error.status
                                if error.stage == "fork" else _describe_wait(error.status << 8))
            self._after_exit(error.status)
            return
        self.starts += 1
        if spec.timeout is not None:
            self._timeout_timer = self.loop.call_later(spec.timeout, self.on_timeout)
        self._set_state(_State.STARTING)
        if not pending:
            self.on_exec_confirmed()

    def _refresh_env(self):
        """--secrets-ttl: resolve the environment again once it is older than
        the TTL; False (after logging why) when that fails."""
        environment = self.environment
        if not environment.stale():
            return True
        try:
            environment.refresh()
        except ProcwrapError as error:
            self.log.event(str(error), "error", event="secrets-failed", name=self.name)
            return False
        self.log.event("%s: resolved its secrets again (older than %s s)"
                       % (self.name, _format_seconds(environment.ttl)),
                       event="secrets-refreshed", name=self.name)
        return True

    def _on_exec(self, error):
        """The child's exec report: its command runs, or could not be started
        (it exits 126/127 now, and finish() follows)."""
        if error is not None:
            self._report_failure(error)
        else:
            self.on_exec_confirmed()

    def on_exec_confirmed(self):
        """STARTING -> RUNNING: its command is executing."""
        if self.state == _State.STARTING:
            self.log.event(STARTED_MSG % (self.name, self.pid), event="started", name=self.name,
                           pid=self.pid)
            self._set_state(_State.RUNNING)

    def run_command(self, argv, on_done):
        """A short command beside this process, where it runs, with its
        environment, user and working directory (an exec probe or hook);
        on_done(wait_status, output).  Raises OSError or _SpawnError."""
        spec = self.spec
        return self.child.run_command(argv, self.environment.values, spec.workdir, spec.user,
                                      on_done)

    def _report_failure(self, error):
        """Log why the command could not be started."""
        spec = self.spec
        self.log.event(_spawn_error_message(self.name, spec.argv, spec.workdir, spec.user, error),
                       "error", event="failed", name=self.name)

    def stop(self):
        """Stop it for good: STARTING/RUNNING -> STOPPING (stop signal, then
        SIGKILL) -> STOPPED; WAITING/BACKOFF -> STOPPED.  An attempt already
        being ended (terminate) ends in STOPPED too."""
        self.hold = True
        if self.state in _State.PENDING:
            # WAITING/BACKOFF -> STOPPED
            self._cancel("_restart_timer")
            self._set_state(_State.STOPPED)
        elif self.state in (_State.STARTING, _State.RUNNING):
            # STARTING/RUNNING -> STOPPING
            self._begin_stopping(for_good=True)
        elif self.state == _State.STOPPING:
            self._for_good = True

    def last_attempt(self):
        """No restart after the run in progress, whatever its status (a stop
        request that does not stop it: wrap mode's INT and QUIT)."""
        self.hold = True

    def _begin_stopping(self, for_good):
        """-> STOPPING: not ready, probes off, the stop signal and the grace.
        `for_good` (stop()) ends in STOPPED; otherwise (a failed probe or hook,
        a timeout) its restartPolicy decides once it is reaped."""
        self._for_good = for_good
        self._stopping_since = self.loop.clock()
        self._set_state(_State.STOPPING)
        self._terminate()

    def _terminate(self):
        """Stop signal to the group now, SIGKILL to the group after the grace.

        With a preStop hook (before_stop), the hook runs first and the grace
        counts from before it, as in Kubernetes.
        """
        if self._kill_timer is None:
            self._kill_timer = self.loop.call_later(self.spec.stop_timeout, self.kill)
        if self.before_stop is not None and not self._hook_ran:
            self._hook_ran = True
            self.before_stop(self, self._send_stop_signal)
        else:
            self._send_stop_signal()

    def _send_stop_signal(self):
        """The stop signal to the group, if it is still there."""
        if self.pid is None:
            return
        self.log.event(STOPPING_MSG % (self.name, _signal_name(self.spec.stop_signal), self.pid),
                       event="stopping", name=self.name, pid=self.pid)
        self.signal(self.spec.stop_signal)

    def kill(self, why=None):
        """SIGKILL to the whole process group: the grace period is over (or `why`
        says what cut it short)."""
        self._cancel("_kill_timer")
        if self.pid is not None:
            if self.state == _State.STOPPING:
                message = KILLING_MSG % (self.name, _format_seconds(round(
                    self.loop.clock() - self._stopping_since, 1)),
                    _signal_name(self.spec.stop_signal))
            else:
                message = "%s: sending SIGKILL to its group" % self.name
            self.log.event(message + (" (%s)" % why if why else ""), "warning",
                           event="killing", name=self.name, pid=self.pid)
        self.signal(signal.SIGKILL, group=True)

    def signal(self, signum, group=None):
        """Send signum to the child's process group (or, with --single-child,
        the child alone: `group` False); quiet if it is already gone."""
        if group is None:
            group = not self.spec.single_child
        self.child.signal(signum, group)

    def terminate(self, reason, event="unhealthy"):
        """End this attempt (a failed probe or postStart hook, its memoryLimit):
        STOPPING, the stop signal, SIGKILL after the grace; then its
        restartPolicy decides, as after any exit."""
        if self.state in (_State.STARTING, _State.RUNNING):
            self.log.event("%s: %s; stopping it" % (self.name, reason), "warning",
                           event=event, name=self.name, pid=self.pid)
            self._begin_stopping(for_good=False)

    def on_timeout(self):
        """spec.timeout expired: stop this attempt (status 124 when it is reaped)."""
        self._timeout_timer = None
        self.timed_out = True
        self.log.event(TIMEOUT_MSG % (self.name, _format_seconds(self.spec.timeout)), "warning",
                       event="timeout", name=self.name, pid=self.pid)
        if self.state in (_State.STARTING, _State.RUNNING):
            self._begin_stopping(for_good=False)

    def finish(self, wait_status):
        """Reaped (its output drained): clear its group, then decide what comes next."""
        status = EX_TIMEOUT if self.timed_out else _exit_status(wait_status)
        pid = self.child.last_pid
        adopted = (self.state == _State.RUNNING and status in self.spec.success_codes
                   and self.child.adopt([spec.options["path"] for spec in self.spec.probes
                                         if spec.handler == "pidFile"]))
        if not self.keep_group and not adopted:
            self.child.end_group()
        self._cancel("_timeout_timer")
        self._cancel("_kill_timer")
        self.status = status
        description = _describe_wait(wait_status)
        if self.timed_out:
            description = "timed out (%s)" % description
        self.description = description
        self.log.event(EXITED_MSG % (self.name, description), event="exited", name=self.name,
                       pid=pid, status=status)
        if adopted:
            self.log.event("%s: following its daemon, pid %d" % (self.name, self.pid),
                           event="adopted", name=self.name, pid=self.pid)
            return
        if self.after_exit is not None:
            # Its finish command first (it stays running, or stopping, meanwhile).
            return self.after_exit(self, wait_status, lambda: self._decide(status))
        self._decide(status)

    def _decide(self, status):
        """After an exit: STOPPED if it was being stopped for good, else what
        its restartPolicy says."""
        if self.state == _State.STOPPING and (self._for_good or self.hold):
            # STOPPING -> STOPPED
            self._set_state(_State.STOPPED)
        else:
            # RUNNING, or STOPPING after a failed probe, hook or timeout
            self._after_exit(status)

    def _after_exit(self, status):
        """RUNNING (or a failed start) -> BACKOFF, EXITED or FATAL by restartPolicy."""
        spec = self.spec
        ran = self.loop.clock() - self.started_at
        # A run that lasted resetAfter seconds was healthy: forget the crash loop.
        if ran >= spec.backoff_reset:
            self.restarts = 0
        failed = status not in spec.success_codes
        # supervisord's startsecs: a run shorter than startSeconds never
        # started well; it is tried again whatever its restartPolicy (which
        # says what follows a run that did), up to backoff.limit.
        early = spec.start_seconds is not None and ran < spec.start_seconds and not self.hold
        self.early = early
        if early:
            self.log.event("%s: ended %s s after it started, before startSeconds (%s s): a "
                           "failed start" % (self.name, _format_seconds(round(ran, 2)),
                                             _format_seconds(spec.start_seconds)),
                           "warning", event="start-failed", name=self.name)
        if self.hold or not early and (spec.restart == "Never" or spec.restart == "OnFailure"
                                       and not failed):
            # -> EXITED
            self._set_state(_State.EXITED)
        elif spec.restart_limit is not None and self.restarts >= spec.restart_limit:
            # -> FATAL
            if spec.restart_limit:
                self.log.event(GIVING_UP_MSG % (self.name, _plural(self.restarts, "restart")),
                               "error", event="fatal", name=self.name)
            self._set_state(_State.FATAL)
        else:
            # -> BACKOFF
            self.restarts += 1
            delay = _backoff_delay(self.restarts, spec.backoff_initial, spec.backoff_factor,
                                   spec.backoff_max, spec.backoff_jitter)
            self._restart_timer = self.loop.call_later(delay, self.start)
            self.delay = delay
            self.log.event(RESTARTING_MSG % (self.name, delay, self.restarts), event="backoff",
                           name=self.name, delay=round(delay, 3), restarts=self.restarts)
            self._set_state(_State.BACKOFF)

    def give_up(self):
        """WAITING -> FATAL: it will never be started (a dependency ended badly)."""
        self._cancel("_restart_timer")
        self._set_state(_State.FATAL)

    def _cancel(self, attribute):
        """Cancel the timer held in `attribute`, if any."""
        timer = getattr(self, attribute)
        if timer is not None:
            timer.cancel()
            setattr(self, attribute, None)


class _Owner(object):
    """What runs a loop for procwrap (Wrapper, Supervisor): signals routed
    through --signal-map, orphans reaped, and one way to end a run,
    shutdown(reason, status), for whatever decides that a run must end (a
    signal, a failed init entry, a lease that could not be renewed).
    Subclasses start their work in begin() and tidy up in end()."""
    exit_status = None      #: what procwrap exits with, once decided
    on_error = None         #: func(traceback text) for a crashed callback; None: raise

    def __init__(self, log, loop=None, signal_map=None, kill_on_second_signal=False,
                 max_line=MAX_LINE_BYTES):
        self.loop = loop or _Loop()              #: the event loop
        self.log = log                          #: the Log
        self.router = _SignalRouter(signal_map)  #: --signal-map, applied to every signal
        self.kill_on_second_signal = kill_on_second_signal
        self.max_line = max_line                #: longest log line before it is split
        self.closers = []                       #: func() run once the loop has stopped

    def run(self):
        """Run until the work is over; return procwrap's exit status."""
        loop = self.loop
        loop.on_orphan = self.on_orphan
        loop.on_error = self.on_error
        began = False
        try:
            self.router.take(loop, self.on_signal)
            began = True
            self.begin()
            loop.run()
        finally:
            if began:           # nothing to end (nor children to sweep) otherwise
                self.end()
            for close in self.closers:
                close()
            loop.close()
        return self.result()

    def begin(self):
        """Start the work (the loop runs once this returns)."""
        raise NotImplementedError

    def end(self):
        """The loop has stopped (or begin() failed): leave nothing behind."""

    def result(self):
        """The exit status."""
        return self.exit_status if self.exit_status is not None else 0

    def on_signal(self, signum):
        """A signal, through the loop (after --signal-map): what each mode does."""
        raise NotImplementedError

    def on_orphan(self, pid, wait_status):
        """An orphaned grandchild was reaped (we are PID 1 or subreaper)."""

    def shutdown(self, reason, status=None):
        """End the run: stop what runs (stop signal, grace, SIGKILL), then exit
        with `status` unless something decided the status already."""
        raise NotImplementedError


# =============================================================================
# Wrap mode
# One command: signals forwarded to its group, retries with backoff, a time
# limit, and its exit status passed through.
# =============================================================================


def _wrapped_signal(process, signum, kill_on_second_signal):
    """What wrap mode does with a signal for its command (and `procwrap
    remote` for each host's): TERM, INT and QUIT mean no retry (TERM stops
    it: stop signal, grace, SIGKILL; INT and QUIT are passed on, and the
    command decides); a second one while it stops is passed on, or kills
    with --kill-on-second-signal; TSTP, TTIN and TTOU become SIGSTOP
    (dumb-init: a child may handle TSTP and carry on; the caller stops
    itself too); every other signal is forwarded."""
    name = _signal_name(signum)
    if name in STOP_SIGNALS:
        if process.state == _State.STOPPING:
            if kill_on_second_signal:
                process.kill("a second %s came" % name)
            else:
                process.signal(signum)
            return
        if process.state in (_State.STARTING, _State.RUNNING) and signum == signal.SIGTERM:
            process.stop()              # the stop signal, then SIGKILL after the grace
            return
        process.last_attempt()
        if process.state == _State.BACKOFF:
            process.stop()
            return
    elif name in JOB_CONTROL_SIGNALS:
        signum = signal.SIGSTOP
    process.signal(signum)


def _log_retry(log, process, named=False):
    """The record of a retry: which attempt, how the last one ended, the delay."""
    attempts = (process.spec.restart_limit or 0) + 1
    message = RETRYING_MSG % (process.restarts, attempts, process.description, process.delay)
    log.event(("%s: " % process.name if named else "") + message, "warning", event="retry",
              **({"name": process.name} if named else {}))


def _run_outcome(process, aborted, lines, redact):
    """(the final status for the API server, the last `lines` of output,
    redacted, or None) of a run that has ended."""
    if aborted:
        outcome = API_ABORTED
    elif process.timed_out:
        outcome = API_TIMED_OUT
    elif process.status in process.spec.success_codes:
        outcome = API_SUCCEEDED
    else:
        outcome = API_FAILED
    tail = None
    if process.ring is not None and lines:
        tail = redact("\n".join(text for _, text in process.ring.lines(lines)))
    return outcome, tail


class _Wrapper(_Owner):
    """Runs one ProcessSpec as wrap mode does and returns its exit status.

    With a `reporter` (an _ApiReporter: status updates, the API server), the
    command starts once the reporter has started the execution (or was
    refused: the status it gives, no command); each retry is reported; the
    run ends after the reporter's final update."""
    status = None               #: the child's last status
    forced_status = None        #: set by shutdown(), wins over the child's
    waiting_for_group = False   #: --wait-group: child gone, group not yet
    reporter = None             #: the _ApiReporter, when the run is reported
    signalled = False           #: a stop signal came from outside: the run was aborted
    lock = None                 #: the _Semaphore of --lock, held while the command runs
    lock_timeout = None         #: seconds to wait for its slot (None: as long as it takes)
    lock_optional = False       #: etcd unreachable: run without the lock (--etcd-unavailable)
    lock_loss = "stop"          #: --on-lock-loss: stop (exit 75), or wait for a slot again
    relocking = False           #: the command is being stopped to wait for a slot again

    def __init__(self, spec, log, max_line=MAX_LINE_BYTES, kill_on_second_signal=False,
                 loop=None, signal_map=None):
        _Owner.__init__(self, log, loop, signal_map, kill_on_second_signal, max_line)
        self.keep_group = spec.keep_group   #: --wait-group, while a subreaper can do it
        self.process = _Process(spec, self.loop, log, self.on_change, max_line)
        log.redact.make_public([spec.name])

    def begin(self):
        """Become subreaper (for --wait-group), hand over the terminal, start the child."""
        subreaper = _become_subreaper()
        if self.keep_group and not subreaper:
            self.log.event("--wait-group: " + NO_SUBREAPER_MSG + "; exiting with the child",
                           "warning")
            self.keep_group = self.process.keep_group = False
        if self.process.spec.tty:
            self._hand_over_terminal()
        if self.lock is not None:
            self.lock.on_lost = self._lock_lost
            return self.lock.acquire(self.lock_timeout, self._locked)
        self._report_start()

    def _locked(self, refused):
        """The lock's word: go on to the start, or exit with `refused`."""
        if refused == EX_UNAVAILABLE and self.lock_optional:
            self.log.event("running without the lock (--etcd-unavailable run)", "warning",
                           event="lock-skipped")
            self.lock, refused = None, None
        if refused is not None:
            self.forced_status = refused
            self.loop.stopped = True
        elif not self.signalled:
            self._report_start()

    def _lock_lost(self, reason):
        """The slot is no longer ours: the command stops; procwrap exits 75,
        or (--on-lock-loss wait) waits for a slot and starts it again."""
        if self.lock_loss != "wait" or self.signalled:
            return self.shutdown(reason, EX_TEMPFAIL)
        self.log.event("%s; stopping the command until a slot is ours again" % reason,
                       "warning", event="lock-lost")
        self.relocking = True
        self.process.stop()
        if self.process.state == _State.STOPPED and self.relocking:
            self._relock()          # it was not running (between retries)

    def _relock(self):
        self.relocking = False
        self.lock.acquire(self.lock_timeout, lambda refused: self._reported(refused, True))

    def _report_start(self):
        """The API server's word (when reported), then the command."""
        if self.reporter is None:
            return self.process.start()
        self.reporter.on_stopped = lambda reason: self.shutdown(reason, EX_TEMPFAIL)
        self.reporter.start(self._reported)

    def _reported(self, refused, again=False):
        """The last gate's word (the reporter's, or the lock's when a slot is
        taken again): start the command (`again`: after a stop), or exit."""
        if refused is not None:
            self.forced_status = refused
            self.loop.stopped = True
        elif not self.signalled:
            self.process.start(manual=again)

    def end(self):
        """Give the lock's slot back at once (a blocking revoke: the loop is
        over), then what every owner leaves behind."""
        if self.lock is not None:
            self.lock.release_now()
        _Owner.end(self)

    def result(self):
        """The child's status, unless shutdown() decided another."""
        return self.forced_status if self.forced_status is not None else self.status

    def _hand_over_terminal(self):
        """Let the child have our controlling terminal, as dumb-init does.

        As a session leader with a terminal (`docker run -t`, PID 1) the
        terminal is ours, and the child's TIOCSCTTY would fail: its shell
        would have no job control.  TIOCNOTTY lets go of it; the kernel then
        sends our foreground group, procwrap alone so far, one HUP and one
        CONT (tty_ioctl(4)), which are not for the child (dumb-init #136).
        """
        import fcntl
        import termios
        try:
            if os.getsid(0) != os.getpid() or os.tcgetpgrp(0) != os.getpgrp():
                return          # someone else's session: the child tries, as before
            fcntl.ioctl(0, termios.TIOCNOTTY)
        except OSError:
            return
        self.router.ignore_once.update([signal.SIGHUP, signal.SIGCONT])

    def shutdown(self, reason, status=None):
        """Stop the child for good (stop signal, grace, SIGKILL); exit with `status`."""
        self.log.event(SHUTDOWN_MSG % reason, "warning", event="shutdown")
        self.forced_status = status
        process = self.process
        process.last_attempt()
        if process.state in (_State.STARTING, _State.RUNNING, _State.BACKOFF):
            process.stop()

    def on_signal(self, signum):
        """TERM, INT and QUIT stop the child without retry (TERM with the stop
        signal, the grace and SIGKILL); TSTP, TTIN and TTOU stop it and us
        until CONT; every other signal is forwarded."""
        signum = self.router.route(signum)
        if signum is None:
            return
        if _signal_name(signum) in STOP_SIGNALS:
            self.signalled = True
            if not self.process.starts:     # still waiting for the API server
                self.log.event("stopped by SIG%s before the command started" % _signal_name(
                    signum), "warning", event="shutdown")
                self.forced_status = 128 + signum
                self.loop.stopped = True
                return
        _wrapped_signal(self.process, signum, self.kill_on_second_signal)
        if _signal_name(signum) in JOB_CONTROL_SIGNALS:
            os.kill(os.getpid(), signal.SIGSTOP)    # and us, until CONT

    def on_change(self, process, old):
        """Log a retry, or end the run when the child is done for good."""
        if self.relocking and process.state == _State.STOPPED:
            return self._relock()
        if process.state == _State.BACKOFF:
            _log_retry(self.log, process)
            if self.reporter is not None:
                self.reporter.attempt_failed(process.timed_out)
        elif process.state in _State.DONE or process.state == _State.STOPPED:
            self.status = process.status
            if self.reporter is not None and not self.reporter.ended:
                return self._report_end(process)
            self._end()

    def _report_end(self, process):
        """The final update, then the end of the run."""
        status = self.forced_status if self.forced_status is not None else process.status
        outcome, tail = _run_outcome(process, self.signalled or self.forced_status == EX_TEMPFAIL,
                                     self.reporter.options["api_log_lines"], self.log.redact)
        self.reporter.finish(outcome, status, tail, self._end)

    def _end(self):
        """The run is over (but for --wait-group's wait for the group)."""
        if self.keep_group and self._group_alive():
            self.waiting_for_group = True
        else:
            self.loop.stopped = True

    def _group_alive(self):
        """Does the child's process group still have members?"""
        if self.process.pgid is None:
            return False
        try:
            os.killpg(self.process.pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def on_orphan(self, pid, wait_status):
        """--wait-group: a group member was reaped; end once none is left."""
        if self.waiting_for_group and not self._group_alive():
            self.loop.stopped = True


# =============================================================================
# HTTP client & leases
# JSON over HTTP with urllib for the servers procwrap talks to (Vault now;
# an API server and etcd next), and the keeper that renews what they grant.
# =============================================================================


class _HttpError(Exception):
    """A request that failed: `status` is the HTTP status, or None when the
    server could not be reached, or 0 when its answer was not JSON;
    `reason` says why in the server's own words where it gave some."""

    retry_after = None      #: seconds the server asked to wait (Retry-After), if it did

    def __init__(self, status, reason):
        Exception.__init__(self, reason)
        self.status = status
        self.reason = reason


class _HttpClient(object):
    """JSON over HTTP(S) through urllib, blocking: used before the loop runs,
    or from the loop's worker.  One place for what every server client needs:
    retries of what the server says to retry (412, 429, 5xx; Retry-After
    honoured up to HTTP_RETRY_AFTER_MAX), TLS settings (a CA file, a client
    certificate, or no verification when asked), a timeout, and one error
    type with the server's reason.  Vault uses it; the reporting client,
    the failure webhook and etcd are to."""

    def __init__(self, base_url, cafile=None, verify=True, cert=None, key=None, headers=None,
                 timeout=HTTP_CLIENT_TIMEOUT, attempts=HTTP_CLIENT_ATTEMPTS):
        self.base_url = base_url.rstrip("/")    #: scheme://host:port[/prefix]
        self.cafile = cafile            #: CA bundle to verify against; None: the system's
        self.verify = verify            #: False: no certificate check (VAULT_SKIP_VERIFY)
        self.cert, self.key = cert, key     #: client certificate and key files, or None
        self.headers = dict(headers or {})  #: sent with every request
        self.timeout = timeout
        self.attempts = attempts        #: 1: the caller retries, by its own policy
        self._context = None            #: the SSLContext, made on first https request

    def request(self, method, path, body=None, headers=None):
        """Send `body` (JSON-able, or None) to base_url/path; the answer
        parsed (an empty answer is {}).  Raises _HttpError."""
        import json
        import urllib.error
        import urllib.request
        sent = dict(self.headers)
        sent.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        url = self.base_url + "/" + path.lstrip("/")
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(url, data=data, headers=sent, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout,
                                            context=self.context()) as response:
                    text = response.read()
            except urllib.error.HTTPError as error:
                wait = self._retry_wait(error, attempt)
                if wait is None:
                    failure = _HttpError(error.code, _http_reason(error))
                    failure.retry_after = _retry_after(error.headers)
                    raise failure
                time.sleep(wait)
                continue
            except (urllib.error.URLError, OSError) as error:
                raise _HttpError(None, str(getattr(error, "reason", error)))
            try:
                return json.loads(text.decode("utf-8")) if text.strip() else {}
            except (ValueError, RecursionError):
                raise _HttpError(0, "the answer is not JSON")

    def _retry_wait(self, error, attempt):
        """Seconds to wait before trying `error`'s request again; None: do not."""
        if error.code not in (412, 429, 500, 502, 503) or attempt >= self.attempts:
            return None
        after = _retry_after(error.headers)
        if after is not None:
            return after if after <= HTTP_RETRY_AFTER_MAX else None
        return 0.5 * attempt

    def context(self):
        """The SSLContext for https (None for http): verified against cafile
        or the system's CAs, or not at all when verify is False."""
        if not self.base_url.startswith("https:"):
            return None
        if self._context is None:
            import ssl
            context = ssl.create_default_context(cafile=self.cafile)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert:
                context.load_cert_chain(self.cert, self.key)
            self._context = context
        return self._context


def _retry_after(headers):
    """Seconds a Retry-After header asks for (delta-seconds, or an HTTP-date
    from now); None when there is none or it says nothing usable."""
    text = (headers.get("Retry-After") or "").strip() if headers else ""
    if _is_digits(text):
        return float(text)
    if text:
        import email.utils
        try:
            return max(0.0, email.utils.parsedate_to_datetime(text).timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


def _http_reason(error):
    """What an HTTP error answer says: a JSON body's `errors` (Vault), `message`
    (etcd, Kubernetes' Status), `detail` or `error` (REST APIs); else the
    status line's reason.  `error` is urllib's HTTPError or http.client's
    response (its body not yet read)."""
    import json
    try:
        body = json.loads(error.read().decode("utf-8"))
    except (ValueError, RecursionError, AttributeError, OSError):
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
        for key in ("message", "detail", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return str(error.reason)


def _describe_http(error):
    """An HTTP failure in a few words."""
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None) or str(error)
    return "HTTP %d: %s" % (status, reason) if status else reason


class _LeaseGone(Exception):
    """The grantor says the lease no longer exists (revoked, or expired)."""


class _LeaseKeeper(object):
    """Keeps something granted for a time alive from the loop: a Vault token
    or lease now; etcd's lease and the reporting heartbeat next.

    renew() (blocking: it runs in the worker) asks for more time and returns
    the seconds granted.  It is called at LEASE_RENEW_AT of the TTL.  When it
    fails, it is tried again while time is left (after a third of what is
    left, at most LEASE_RETRY_MAX); when no time is left, or the grantor
    gives no more, on_expired(keeper, reason) decides what happens (a policy:
    stop the run, go on without).  on_renewed(keeper) and on_retry(keeper,
    reason, delay) are for the log.
    """
    stopped = False

    def __init__(self, loop, name, ttl, renew, on_renewed=None, on_retry=None,
                 on_expired=None, renew_at=LEASE_RENEW_AT):
        self.loop = loop
        self.name = name                #: for messages: a lease id, 'token'
        self.ttl = ttl                  #: seconds last granted
        self.renew = renew              #: func() -> seconds granted; raises when it cannot
        self.on_renewed = on_renewed    #: func(keeper)
        self.on_retry = on_retry        #: func(keeper, reason, delay)
        self.on_expired = on_expired    #: func(keeper, reason)
        self.expires = loop.clock() + ttl   #: loop time it runs out
        self.renew_at = renew_at        #: renew when this much of the TTL has passed
        self._timer = loop.call_later(ttl * renew_at, self._renew)

    def _renew(self):
        """Time to ask for more: in the worker."""
        self._timer = None
        self.loop.run_in_worker(self.renew, self._on_renewed)

    def _on_renewed(self, granted, error):
        """Schedule the next renewal; or retry while time is left; or expire."""
        if self.stopped:
            return
        now = self.loop.clock()
        if error is None and granted:
            self.ttl, self.expires = int(granted), now + int(granted)
            if self.on_renewed is not None:
                self.on_renewed(self)
            self._timer = self.loop.call_later(self.ttl * self.renew_at, self._renew)
            return
        reason = str(error) if error is not None else "no more time was granted"
        if isinstance(error, _LeaseGone):
            return self._expired(reason)        # gone now: no time is left to wait out
        left = self.expires - now
        if left > 1.0 and error is not None:
            delay = min(LEASE_RETRY_MAX, left / 3.0)
            if self.on_retry is not None:
                self.on_retry(self, reason, delay)
            self._timer = self.loop.call_later(delay, self._renew)
        else:
            self._timer = self.loop.call_later(max(0.0, left), self._expired, reason)

    def _expired(self, reason):
        """Renewal finally failed."""
        self._timer = None
        if self.on_expired is not None:
            self.on_expired(self, reason)

    def stop(self):
        """No more renewals (the run ends, or the lease was given back)."""
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# =============================================================================
# Fleet
# Limits across machines, kept in etcd (its v3 JSON gateway, SPECS.md 8): a
# distributed semaphore of N slots, each held by a lease that the loop keeps
# alive; the holder's key says who holds it.
# =============================================================================

#: Where the semaphores' keys live in etcd: PREFIX/NAME/<lease id in hex>.
LOCK_PREFIX = "/procwrap/locks/"
#: Seconds a slot's lease lives without a keep-alive (kept alive at a third).
LOCK_TTL = 15.0
#: Seconds a waiter's watch for a freed slot stays open before it is made
#: again (a member that went silent sends nothing; the queue is looked at anew).
LOCK_WATCH_MAX = 60.0


def _b64(text):
    import base64
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(text):
    import base64
    return base64.b64decode(text or "").decode("utf-8", "replace")


def _prefix_end(prefix):
    """etcd's range_end for every key that starts with `prefix`."""
    data = prefix.encode("utf-8")
    return data[:-1] + bytes((data[-1] + 1,))


class _Etcd(object):
    """etcd's v3 JSON gateway, blocking (the loop's worker runs it): every
    call is a POST of JSON; keys and values travel in base64, numbers as
    strings.  Endpoints are tried in turn, the last one that answered
    first: a cluster whose member died is followed to another."""
    token = None

    def __init__(self, endpoints, user=None, password=None, cafile=None, cert=None, key=None,
                 timeout=5.0):
        self.clients = [_HttpClient(url, cafile=cafile, cert=cert, key=key, timeout=timeout,
                                    attempts=1) for url in endpoints]
        self.user, self.password = user, password
        self.api = None                 #: '/v3' (3.4+) or '/v3beta' (3.3)

    def call(self, path, body):
        """The answer of the first endpoint that gives one; _HttpError
        (status None) when none could be reached."""
        failure = None
        for client in list(self.clients):
            try:
                if self.api is None:
                    self._connect(client)
                headers = {"Authorization": self.token} if self.token else None
                answer = client.request("POST", self.api + path, body, headers)
            except _HttpError as error:
                if error.status is not None:
                    raise
                failure = error
                continue
            if client is not self.clients[0]:       # the one that answers, first from now on
                self.clients.remove(client)
                self.clients.insert(0, client)
            return answer
        raise failure or _HttpError(None, "no etcd endpoint")

    def _connect(self, client):
        """Learn the gateway's path from /version; authenticate if asked."""
        version = client.request("GET", "version").get("etcdserver", "")
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        if parts < [3, 3]:
            raise _HttpError(0, "etcd %s is too old; procwrap needs 3.3 or later" % version)
        self.api = "v3" if parts >= [3, 4] else "v3beta"
        if self.user:
            answer = client.request("POST", self.api + "/auth/authenticate",
                                    {"name": self.user, "password": self.password or ""})
            self.token = answer.get("token")

    def grant(self, ttl):
        """A new lease of `ttl` seconds: its id."""
        return self.call("/lease/grant", {"TTL": str(int(ttl))})["ID"]

    def keepalive(self, lease):
        """Seconds the lease now has; _LeaseGone when it has none."""
        answer = self.call("/lease/keepalive", {"ID": lease})
        ttl = int((answer.get("result") or answer).get("TTL") or 0)
        if ttl <= 0:
            raise _LeaseGone("the lease is gone")
        return ttl

    def revoke(self, lease):
        """End the lease (its keys go with it); quiet if it is gone already."""
        try:
            self.call("/lease/revoke", {"ID": lease})
        except _HttpError as error:
            if error.status != 404:
                raise

    def join(self, key, value, lease):
        """Put `key` (with the lease) unless it exists; its create revision."""
        answer = self.call("/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value),
                                         "lease": lease}}],
            "failure": [{"request_range": {"key": _b64(key)}}]})
        if answer.get("succeeded"):
            return int(answer["header"]["revision"])
        return int(answer["responses"][0]["response_range"]["kvs"][0]["create_revision"])

    def queue(self, prefix):
        """Every key under `prefix`, oldest first: [(key, create revision,
        value)], and the store's revision."""
        answer = self.call("/kv/range", {"key": _b64(prefix),
                                         "range_end": _b64(_prefix_end(prefix).decode()),
                                         "sort_target": "CREATE", "sort_order": "ASCEND"})
        return ([(_unb64(kv["key"]), int(kv["create_revision"]), _unb64(kv.get("value")))
                 for kv in answer.get("kvs", ())], int(answer["header"]["revision"]))

    def watch_deletes(self, prefix, revision, timeout, on_delete):
        """Stream the deletes under `prefix` from `revision` on: on_delete(key)
        for each, until it returns True, or the stream has been quiet for
        `timeout` seconds, or the member goes (a streaming watch, read in a
        thread)."""
        import json
        import urllib.request
        client = self.clients[0]
        request = {"key": _b64(prefix), "start_revision": str(revision)}
        if prefix.endswith("/"):        # a prefix; else the one key
            request["range_end"] = _b64(_prefix_end(prefix).decode())
        body = json.dumps({"create_request": request}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        request = urllib.request.Request(client.base_url + "/" + self.api + "/watch",
                                         data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout,
                                        context=client.context()) as stream:
                for line in stream:
                    events = (json.loads(line.decode("utf-8")).get("result") or {}).get(
                        "events") or ()
                    for event in events:
                        if event.get("type") == "DELETE" and on_delete(
                                _unb64(event["kv"]["key"])):
                            return
        except (OSError, ValueError, KeyError):
            pass            # quiet too long, or the member went: the caller looks again


class _Semaphore(object):
    """One of `limit` slots of the semaphore NAME, across machines (SPECS.md
    8.4): a lease, a key PREFIX/NAME/<lease> holding who we are, and the
    slot is ours while our key is among the `limit` oldest.  Waiters are
    served in arrival order (create revision).  acquire() then(None) when
    held, then(status) when not: EX_TEMPFAIL at the timeout, EX_UNAVAILABLE
    when etcd cannot be reached.  on_lost(reason) when the lease is lost
    while held.  release_now() revokes it: the slot frees at once."""
    lease = None
    held = False
    _releasing = None       #: a lease release() gave the worker to revoke, until it did
    on_lost = None          #: func(reason)
    holders = ()            #: what the holders' keys said, when last looked at
    waiters = 0             #: keys waiting then
    timeout = None          #: seconds acquire() may wait (0: not at all; None: no limit)

    def __init__(self, loop, log, etcd, name, limit, prefix=LOCK_PREFIX, ttl=LOCK_TTL,
                 info=None):
        self.loop, self.log, self.etcd = loop, log, etcd
        self.name, self.limit, self.ttl = name, limit, ttl
        self.prefix = prefix.rstrip("/") + "/" + name + "/"
        self.info = info or {}          #: what the key says of its holder
        self.key = None
        self.keeper = None
        self.waiting = False
        self._then = None
        self._timer = None
        self.ahead = set()              #: the keys ahead of ours, while we wait
        self.acquired_in = None         #: seconds from acquire() to the slot

    def acquire(self, timeout, then):
        """Join the queue; then(None) once a slot is ours (see the class)."""
        import json
        self._then = then
        self._began = self.loop.clock()
        value = json.dumps(dict(self.info, since=_rfc3339(time.time())))

        def join():
            lease = self.etcd.grant(self.ttl)
            self.lease = lease          # so release() revokes it whatever follows
            key = self.prefix + "%x" % int(lease)
            return key, self.etcd.join(key, value, lease)

        def joined(result, error):
            if error is not None:
                return self._done(EX_UNAVAILABLE, "etcd: %s" % _describe_http(error))
            self.key, self.revision = result
            self.keeper = _LeaseKeeper(self.loop, "lock %s" % self.name, self.ttl,
                                       lambda: self.etcd.keepalive(self.lease),
                                       on_expired=self._expired, renew_at=1.0 / 3.0)
            self._look()
        self.timeout = timeout
        if timeout:             # 0: one look, no wait (see _look)
            self._timer = self.loop.call_later(timeout, self._timed_out, timeout)
        self.loop.run_in_worker(join, joined)

    def _look(self):
        """Is our key among the `limit` oldest?  If not, wait for a delete."""
        def looked(result, error):
            if self._then is None:
                return
            if error is not None:
                return self._done(EX_UNAVAILABLE, "etcd: %s" % _describe_http(error))
            keys, revision = result
            names = [key for key, _, _ in keys]
            self.holders = [_json_object(value) or {} for _, _, value in keys[:self.limit]]
            self.waiters = max(0, len(keys) - self.limit)
            if self.key in names[:self.limit]:
                return self._done(None)
            if self.timeout == 0:
                return self._done(EX_TEMPFAIL, "no slot free; not waiting (--lock-timeout 0)")
            place = names.index(self.key) if self.key in names else len(names)
            self.ahead = set(names[:place])     # only their going can free a slot for us
            if not self.waiting:
                self.waiting = True
                self.log.event("lock %s: waiting (%d of %d slots taken, %d waiting ahead)" % (
                    self.name, min(len(names), self.limit), self.limit,
                    max(0, place - self.limit)), event="lock-waiting", lock=self.name)
            self._watch(revision + 1)
        self.loop.run_in_worker(lambda: self.etcd.queue(self.prefix), looked)

    def _watch(self, revision):
        """A thread follows the deletes under the prefix (a streaming watch,
        never a poll); each key ahead of ours that goes is counted off here,
        so a freed slot costs each waiter no request at all.  When the watch
        ends (quiet too long, a member gone) the queue is looked at anew."""
        import threading

        def deleted(key):
            self.loop.call_soon_threadsafe(self._gone, key)
            return self._then is None       # not waiting any more: the watch may end

        def wait():
            self.etcd.watch_deletes(self.prefix, revision, LOCK_WATCH_MAX, deleted)
            self.loop.call_soon_threadsafe(self._rewatch)
        threading.Thread(target=wait, daemon=True, name="procwrap-lock-watch").start()

    def _watch_key(self):
        """While held, our own key is watched: deleted behind our back (the
        lease alive), the slot is no longer ours."""
        import threading
        key, revision = self.key, self.revision

        def deleted(gone):
            self.loop.call_soon_threadsafe(self._key_gone, key)
            return True

        def watch():
            self.etcd.watch_deletes(key, revision, LOCK_WATCH_MAX, deleted)
            self.loop.call_soon_threadsafe(self._rewatch_key, key)
        threading.Thread(target=watch, daemon=True, name="procwrap-lock-key").start()

    def _key_gone(self, key):
        if self.held and key == self.key:
            self.held = False
            if self.keeper is not None:
                self.keeper.stop()
            if self.on_lost is not None:
                self.on_lost("lock %s: lost the slot (our key was deleted)" % self.name)

    def _rewatch_key(self, key):
        """The watch ended quiet (or its member went): watch again while held."""
        if self.held and key == self.key:
            self._watch_key()

    def _gone(self, key):
        """A key went: ours (the lease ended while we waited), or one ahead."""
        if self._then is None:
            return
        if key == self.key:
            return self._done(EX_TEMPFAIL, "our place in the queue went (the lease ended)")
        self.ahead.discard(key)
        if len(self.ahead) < self.limit:
            self._done(None)

    def _rewatch(self):
        if self._then is not None:
            self._look()

    def _done(self, status, reason=None):
        """Acquired (status None), or given up."""
        then, self._then = self._then, None
        if then is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiting = False
        if status is None:
            self.held = True
            self.acquired_in = self.loop.clock() - self._began
            self._watch_key()
            self.log.event("lock %s: holding one of %d slots (after %s s)" % (
                self.name, self.limit, _format_seconds(round(self.acquired_in, 3))),
                event="lock-acquired", lock=self.name, seconds=round(self.acquired_in, 4))
        else:
            self.log.event("lock %s: %s" % (self.name, reason), "error", event="lock-failed",
                           lock=self.name)
        then(status)

    def _timed_out(self, timeout):
        self._timer = None
        self._done(EX_TEMPFAIL, "no slot free within %s s; not starting" % _format_seconds(
            timeout))                   # the owner's end gives our key back at once

    def _expired(self, keeper, reason):
        """The lease is lost: the slot is no longer ours."""
        if self.held:
            self.held = False
            if self.on_lost is not None:
                self.on_lost("lock %s: lost the slot (%s)" % (self.name, reason))

    def release(self):
        """Give the slot back, in the worker (the loop goes on)."""
        self._then = None
        self.held = False
        if self.keeper is not None:
            self.keeper.stop()
        lease, self.lease = self.lease, None
        if lease is not None:
            self._releasing = lease

            def released(result, error):
                if self._releasing == lease:
                    self._releasing = None
            self.loop.run_in_worker(lambda: self.etcd.revoke(lease), released)

    def release_now(self):
        """Give the slot (or our place in the queue) back: revoke the lease,
        blocking (the owner's end, once the loop has stopped), so it frees
        at once; if etcd cannot be told, it frees within the TTL."""
        self._then = None
        self.held = False
        if self.keeper is not None:
            self.keeper.stop()
        lease, self.lease = self.lease, None
        if lease is None and self._releasing is not None:
            # release() asked the worker, and the loop stopped before it was
            # done (a shutdown right after a stop): say it again, now; a
            # lease already revoked is no news.
            lease, self._releasing = self._releasing, None
            try:
                self.etcd.revoke(lease)
            except _HttpError:
                pass
            return
        if lease is None:
            return
        try:
            self.etcd.revoke(lease)
        except _HttpError as error:
            self.log.event("lock %s: could not give the slot back (%s); it frees within %s s"
                           % (self.name, _describe_http(error), _format_seconds(self.ttl)),
                           "warning", event="lock-release-failed", lock=self.name)


# =============================================================================
# Secrets
# Location strings ([PROVIDER:]ADDRESS[!FORMAT][|JP:PATH]) and the built-in
# JSON Path subset; the providers that fetch them; _Secrets, which resolves a
# pass of them; children's environments; resolve_config() for embedding.
# =============================================================================


#: Formats a location may name after '!'.
SECRET_FORMATS = ("dotenv", "json", "yaml", "toml")

_PROVIDER_RE = _Pattern(r"^([A-Z][A-Z0-9_]*):")
_FORMAT_RE = _Pattern(r"!([A-Za-z]+)$")
_AUTODETECT = (("arn:aws:secretsmanager:", "AWS_SM"), ("arn:aws:s3:::", "AWS_S3"),
               ("arn:aws:ssm:", "AWS_SSM"), ("ssm:", "AWS_SSM"))


class _Location(object):
    """A parsed location string."""
    __slots__ = ("provider", "address", "format", "path")

    def __init__(self, provider, address, format=None, path=None):
        self.provider = provider    #: a key of SECRET_PROVIDERS
        self.address = address      #: what the provider looks up
        self.format = format        #: one of SECRET_FORMATS, or None (detect)
        self.path = path            #: a JSON Path into the parsed document, or None

    def __eq__(self, other):
        return isinstance(other, _Location) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    @property
    def shown(self):
        """The location as messages show it: a PLAIN one's address is the value itself."""
        text = "%s:%s" % (self.provider, REDACTED if self.provider == "PLAIN" else self.address)
        if self.format:
            text += "!" + self.format
        return text + ("|JP:" + self.path if self.path else "")

    def __repr__(self):
        return "_Location(%r, %r, %r, %r)" % (self.provider, self.address, self.format,
                                              self.path)


def _known(value, choices, what, where):
    """`value` if it is one of `choices`; else a ConfigError with a did-you-mean."""
    if value not in choices:
        raise ConfigError("%s: unknown %s %r%s; expected one of %s" % (
            where, what, value, _did_you_mean(value, choices), ", ".join(choices)))
    return value


def _parse_location(text, where):
    """A _Location from '[PROVIDER:]ADDRESS[!FORMAT][|JP:PATH]'; ConfigError if malformed.

    An upper-case prefix must be a known provider; a lower-case one
    ('file:x', 'c:x') is part of a path.  ARNs and 'ssm:' pick their AWS
    provider; 'file://' is stripped; anything else is a file path.
    """
    rest, separator, path = text.partition("|JP:")
    if separator and not path.strip():
        raise ConfigError("%s: empty JSON Path after '|JP:'; write |JP:$.field" % where)
    fmt = None
    match = _FORMAT_RE.search(rest)
    if match:
        fmt = _known(match.group(1), SECRET_FORMATS, "format", where)
        rest = rest[:match.start()]
    provider = None
    match = _PROVIDER_RE.match(rest)
    if match:
        provider = _known(match.group(1), SECRET_PROVIDERS, "provider", where)
        rest = rest[match.end():]
    else:
        for prefix, name in _AUTODETECT:
            if rest.startswith(prefix):
                provider = name
                if prefix == "ssm:":
                    rest = rest[len(prefix):]
                break
    if provider is None or provider == "FILE":
        provider = "FILE"
        if rest.startswith("file://"):
            rest = rest[len("file://"):]
    if not rest and provider != "PLAIN":
        raise ConfigError("%s: %s location has no address; write %s:ADDRESS"
                          % (where, provider, provider))
    return _Location(provider, rest, fmt, path.strip() or None)


_JSONPATH_STEP_RE = _Pattern(
    r"""\.([A-Za-z0-9_\-]+|[^\x00-\x7f]+)      # .name
      | \.\*                                 # .*
      | \[\s*\*\s*\]                          # [*]
      | \[\s*(-?\d+)\s*\]                     # [n]
      | \[\s*'((?:\\.|[^'\\])*)'\s*\]          # ['name']
      | \[\s*"((?:\\.|[^"\\])*)"\s*\]          # ["name"]
    """, re.X)


def _jsonpath_steps(path):
    """Steps of a JSON Path in the built-in subset, or None when it needs jsonpath-ng."""
    if not path.startswith("$"):
        path = "$." + path          # the dotted shorthand: data.password
    steps, pos = [], 1
    while pos < len(path):
        match = _JSONPATH_STEP_RE.match(path, pos)
        if not match:
            return None
        name, index, single, double = match.group(1, 2, 3, 4)
        if name is not None:
            steps.append(("member", name))
        elif index is not None:
            steps.append(("index", int(index)))
        elif single is not None or double is not None:
            quoted = single if single is not None else double
            steps.append(("member", re.sub(r"\\(.)", r"\1", quoted)))
        else:
            steps.append(("all", None))
        pos = match.end()
    return steps


def _jsonpath(document, path, where):
    """Values that `path` selects in `document`, in order (an empty list if none).

    $, .name, ['name'], [n] (negative from the end), [*] and .* need no
    library; anything else is handed to jsonpath-ng.  Selectors never coerce:
    [0] on an object and .name on an array select nothing.
    """
    steps = _jsonpath_steps(path)
    if steps is None:
        library = _require("jsonpath_ng.ext", "jsonpath-ng",
                           "for JSON Path beyond $.a, ['a'], [0] and [*]", where)
        try:
            return [found.value for found in library.parse(path).find(document)]
        except Exception as error:
            raise ConfigError("%s: cannot use JSON Path %r: %s" % (where, path, error))
    nodes = [document]
    for kind, key in steps:
        found = []
        for node in nodes:
            if kind == "member" and isinstance(node, dict) and key in node:
                found.append(node[key])
            elif kind == "index" and isinstance(node, list) and -len(node) <= key < len(node):
                found.append(node[key])
            elif kind == "all" and isinstance(node, list):
                found.extend(node)
            elif kind == "all" and isinstance(node, dict):
                found.extend(node.values())
        nodes = found
    return nodes


MERGE_STRATEGIES = ("SHALLOW", "REPLACE", "ADDITIVE", "TYPESAFE_REPLACE", "TYPESAFE_ADDITIVE")


def _merge(documents, strategy, where):
    """One new dict from several, later ones winning, by a mergedeep-style strategy.

    SHALLOW: top-level keys replace.  REPLACE: nested dicts merge, other
    values replace.  ADDITIVE: as REPLACE, but lists concatenate.
    TYPESAFE_*: as their namesakes, but a key whose types differ is an error.
    """
    _known(strategy, MERGE_STRATEGIES, "merge strategy", where)
    result = {}
    for document in documents:
        if strategy == "SHALLOW":
            result.update(document)
        else:
            _merge_into(result, document, strategy, where)
    return result


def _merge_into(target, source, strategy, where, trail=""):
    """Merge one document into `target` by `strategy` (see _merge); `trail`
    is the path of keys so far, for the TYPESAFE strategies' messages."""
    for key, value in source.items():
        place = "%s.%s" % (trail, key) if trail else str(key)
        old = target.get(key)
        if key in target and strategy.startswith("TYPESAFE") and type(old) is not type(value):
            raise ConfigError("%s: %s is %s in one document and %s in another; make them "
                              "agree or use merge strategy REPLACE" % (
                                  where, place, type(old).__name__, type(value).__name__))
        if isinstance(old, dict) and isinstance(value, dict):
            _merge_into(old, value, strategy, where, place)
        elif isinstance(old, list) and isinstance(value, list) and strategy.endswith("ADDITIVE"):
            target[key] = old + value
        else:
            target[key] = _deep_copy(value)


def _deep_copy(value):
    """Copy the dicts and lists of a parsed document (so merging never aliases)."""
    if isinstance(value, dict):
        return dict((k, _deep_copy(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


_TEMPLATE_RE = _Pattern(r"\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _is_template(text):
    """Does `text` use {{ .NAME }} (Simplevisor's vault-template form)?"""
    return _TEMPLATE_RE.search(text) is not None


def _render_template(text, values, where):
    """Replace each {{ .NAME }} by values[NAME]; a missing NAME is an error naming it."""
    def replace(match):
        name = match.group(1)
        if name not in values:
            raise ConfigError("%s: the template uses {{ .%s }}, which is not set; set %s or "
                              "fix the name%s" % (where, name, name, _did_you_mean(name, values)))
        return _env_string(values[name])
    return _TEMPLATE_RE.sub(replace, text)


def _env_string(value):
    """A resolved value as an environment string: dicts and lists as JSON,
    booleans as TRUE/FALSE, null as empty, numbers as JSON writes them."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    import json
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_location(text):
    """Does a resolved value name another location (an upper-case provider
    prefix, an AWS ARN or ssm:)?  Then it is resolved again."""
    match = _PROVIDER_RE.match(text)
    if match and match.group(1) in SECRET_PROVIDERS:
        return True
    return any(text.startswith(prefix) for prefix, _ in _AUTODETECT)


# -- values and redaction

class Secret(str):
    """A resolved value: an ordinary str to the child, but repr() shows [secret].

    Messages put values in with %r, so one that strays into a message
    prints as [secret]::

        >>> "%r" % procwrap.Secret("hunter2")
        '[secret]'
    """
    __slots__ = ()

    def __repr__(self):
        return REDACTED


def _secret(value):
    """`value` with every string in it made a Secret."""
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict):
        return dict((key, _secret(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_secret(item) for item in value]
    return value


# -- documents

_FORMAT_BY_EXTENSION = {".env": "dotenv", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
                        ".toml": "toml"}
_FORMAT_BY_TYPE = {"application/json": "json", "application/yaml": "yaml",
                   "application/x-yaml": "yaml", "text/yaml": "yaml", "text/x-yaml": "yaml",
                   "application/toml": "toml"}


class _Unavailable(Exception):
    """A provider could not fetch: the reason, for UNRESOLVED_MSG."""


class _Binary(bytes):
    """Bytes a provider marks as binary: base64 text unless a format is named."""


def _format_of(name, content_type=None):
    """A document's format from its name's extension, else its content type, else None."""
    base = os.path.basename(name)
    if base.endswith(".env"):       # '.env' itself has no extension to splitext
        return "dotenv"
    extension = os.path.splitext(base)[1].lower()
    if extension in _FORMAT_BY_EXTENSION:
        return _FORMAT_BY_EXTENSION[extension]
    if content_type:
        return _FORMAT_BY_TYPE.get(content_type.split(";")[0].strip().lower())
    return None


def _parse_document(raw, fmt, shown, environ):
    """A fetched document read in its format; structured data passes as it is.

    Errors give the format and the position, never the content (it is
    a secret): a YAML error's snippet is left out.
    """
    if not isinstance(raw, (str, bytes)):
        return raw
    if isinstance(raw, bytes):
        text = None
        if fmt is not None or not isinstance(raw, _Binary):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                if fmt is not None:
                    raise _Unavailable("not UTF-8 text, so not %s; drop !%s to get it "
                                       "base64-encoded" % (fmt, fmt))
        if text is None:            # binary, and no format asks to read it
            import base64
            return base64.b64encode(raw).decode("ascii")
        raw = text
    if fmt is None:
        return raw
    if fmt == "dotenv":
        try:
            return dict(_parse_dotenv(raw, shown, environ))
        except _DotenvError as error:       # never the text: it may be a secret
            raise _Unavailable("line %d, column %d: %s"
                               % (error.line, error.column, DOTENV_ERROR_MSG))
    try:
        return _parse_text(raw, fmt, shown, secret=True)
    except _ShapeError as error:
        raise _Unavailable(str(error))
    except ValueError as error:
        detail = str(error)
        if fmt == "yaml":
            detail = " " + detail if detail else ""
        else:
            detail = " (%s)" % detail
        raise _Unavailable("not valid %s%s; fix the document or name its format"
                           % (fmt.upper() if fmt != "yaml" else "YAML", detail))


# -- providers: fetch(location) -> (raw document, format hint); _Unavailable on failure

class _FileProvider(object):
    """FILE: a path, or file://path; the format from the file's extension."""

    def __init__(self, secrets):
        self.secrets = secrets

    def fetch(self, location):
        """The file's bytes, and a format from its extension."""
        try:
            return _read_file(location.address), _format_of(location.address)
        except (OSError, ValueError) as error:
            raise _Unavailable("cannot read %r: %s; fix the path"
                               % (location.address, _read_error(error)))


class _EnvProvider(_FileProvider):
    """ENV: another variable of procwrap's own environment."""

    def fetch(self, location):
        """The variable's value."""
        value = self.secrets.environ.get(location.address)
        if value is None:
            raise _Unavailable("procwrap's environment has no variable %s; set it or fix "
                               "the name" % location.address)
        return value, None


class _PlainProvider(_FileProvider):
    """PLAIN: the address is the value (to give a format, or a default in a chain)."""

    def fetch(self, location):
        """The address itself."""
        return location.address, None


class _ConfigProvider(_FileProvider):
    """CONFIG: a JSON Path into the config dict that resolve_config() was given."""

    def fetch(self, location):
        """What the JSON Path selects in the config dict."""
        if self.secrets.config is None:
            raise _Unavailable("CONFIG: locations read the dict given to "
                               "procwrap.resolve_config(); use another provider here")
        found = _jsonpath(self.secrets.config, location.address, location.shown)
        if not found:
            raise _Unavailable("%s selects nothing in the config" % location.address)
        return (found[0] if len(found) == 1 else found), None


class _AwsProvider(_FileProvider):
    """What the AWS providers share: one boto3 client per region, errors in one line.

    boto3 finds credentials and the default region as always (environment,
    profile, instance or task role); AWS_ENDPOINT_URL and its per-service
    twins point it elsewhere, as the AWS SDKs do.
    """
    service = None              #: boto3's name for the service
    endpoint_variable = None    #: AWS_ENDPOINT_URL_<SERVICE>

    def __init__(self, secrets):
        _FileProvider.__init__(self, secrets)
        self.clients = {}       #: region (None: the default) -> boto3 client

    def call(self, location, region, operation, **arguments):
        """client.operation(**arguments); a botocore error becomes _Unavailable."""
        self.secrets.used.add("AWS")
        boto3 = _require("boto3", "boto3", "for AWS_* locations", location.shown)
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            client = self.clients.get(region)
            if client is None:
                environ, options = self.secrets.environ, {}
                endpoint = environ.get(self.endpoint_variable) or environ.get("AWS_ENDPOINT_URL")
                if endpoint:
                    options["endpoint_url"] = endpoint
                if region:
                    options["region_name"] = region
                client = boto3.session.Session().client(self.service, **options)
                self.clients[region] = client
            return getattr(client, operation)(**arguments)
        except (BotoCoreError, ClientError) as error:
            raise _Unavailable("%s; check the name, the region (AWS_REGION) and the "
                               "credentials" % error)


_UUID_RE = _Pattern(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                    r"[0-9a-fA-F]{12}$")


class _SecretsManagerProvider(_AwsProvider):
    """AWS_SM: a secret by ARN (full, or partial without the 6-character
    suffix) or by name, then optionally :VERSION_STAGE or :VERSION_ID (or
    both); the region from the ARN.  A binary secret comes base64-encoded."""
    service = "secretsmanager"
    endpoint_variable = "AWS_ENDPOINT_URL_SECRETS_MANAGER"

    def fetch(self, location):
        """GetSecretValue: the string, or the binary (base64 unless a format is named)."""
        parts = location.address.split(":")
        region = None
        if parts[0] == "arn":
            if len(parts) < 7 or parts[5] != "secret":
                raise _Unavailable("%r is not a Secrets Manager ARN; write "
                                   "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"
                                   % location.address)
            region, secret_id, extra = parts[3] or None, ":".join(parts[:7]), parts[7:]
        else:
            secret_id, extra = parts[0], parts[1:]
        arguments = {"SecretId": secret_id}
        for part in extra[:2]:
            if part:
                arguments["VersionId" if _UUID_RE.match(part) else "VersionStage"] = part
        response = self.call(location, region, "get_secret_value", **arguments)
        if response.get("SecretString") is not None:
            return response["SecretString"], None
        return _Binary(response.get("SecretBinary") or b""), None


class _S3Provider(_AwsProvider):
    """AWS_S3: an object, arn:aws:s3:::BUCKET/KEY or BUCKET/KEY; the format
    from the key's extension, else from the object's content type."""
    service = "s3"
    endpoint_variable = "AWS_ENDPOINT_URL_S3"

    def fetch(self, location):
        """GetObject: the body, and a format from the key or the content type."""
        address = location.address
        if address.startswith("arn:aws:s3:::"):
            address = address[len("arn:aws:s3:::"):]
        bucket, _, key = address.partition("/")
        if not bucket or not key:
            raise _Unavailable("%r names no object; write arn:aws:s3:::BUCKET/KEY"
                               % location.address)
        response = self.call(location, None, "get_object", Bucket=bucket, Key=key)
        return response["Body"].read(), _format_of(key, response.get("ContentType"))


class _ParameterStoreProvider(_AwsProvider):
    """AWS_SSM: a Parameter Store parameter by name (NAME:VERSION picks a
    version) or ARN, decrypted; a StringList becomes a list."""
    service = "ssm"
    endpoint_variable = "AWS_ENDPOINT_URL_SSM"

    def fetch(self, location):
        """GetParameter, decrypted."""
        name, region = location.address, None
        if name.startswith("arn:"):
            parts = name.split(":", 5)
            if len(parts) < 6 or not parts[5].startswith("parameter/"):
                raise _Unavailable("%r is not a parameter ARN; write "
                                   "arn:aws:ssm:REGION:ACCOUNT:parameter/NAME" % name)
            region, name = parts[3] or None, parts[5][len("parameter/"):]
            if "/" in name:         # the ARN of /app/key is .../parameter/app/key
                name = "/" + name
        response = self.call(location, region, "get_parameter", Name=name, WithDecryption=True)
        parameter = response["Parameter"]
        if parameter.get("Type") == "StringList":
            return parameter["Value"].split(","), None
        return parameter["Value"], None


class _Lease(object):
    """Something Vault granted for a time: a secret's lease (dynamic
    credentials), or procwrap's own token; a _LeaseKeeper renews it."""

    def __init__(self, name, lease_id, duration, renewable, data=None):
        self.name = name            #: for messages: the lease id, or 'token'
        self.lease_id = lease_id    #: None for the token
        self.duration = duration    #: seconds last granted
        self.renewable = renewable  #: Vault says it can be extended
        self.data = data            #: the secret's data, shared by every reader
        self.keeper = None          #: its _LeaseKeeper, once renewal started


class _VaultProvider(_FileProvider):
    """VAULT: a path under Vault's /v1/ ('kv/app', 'secret/data/app',
    'database/creds/app'), read with VAULT_TOKEN or an AppRole login
    (VAULT_ROLE_ID, VAULT_SECRET_ID); VAULT_NAMESPACE, VAULT_CACERT and
    VAULT_SKIP_VERIFY as the vault CLI reads them.

    KV v2's data.data is unwrapped.  A leased secret (dynamic credentials)
    is read once and shared by every process that names it; renewal keeps
    its lease and the token alive from the event loop (SPECS.md 2.5, 2.9).
    """

    def __init__(self, secrets):
        _FileProvider.__init__(self, secrets)
        environ = secrets.environ
        self.address = (environ.get("VAULT_ADDR") or "").rstrip("/")
        self.token = environ.get("VAULT_TOKEN") or None
        self.role_id = environ.get("VAULT_ROLE_ID") or None
        self.secret_id = environ.get("VAULT_SECRET_ID") or None
        self.namespace = environ.get("VAULT_NAMESPACE") or None
        self.client = _HttpClient(self.address + "/v1", environ.get("VAULT_CACERT") or None,
                                  environ.get("VAULT_SKIP_VERIFY", "").lower()
                                  not in ("1", "true", "yes"), headers={"X-Vault-Request": "true"})
        self.token_lease = None     #: a _Lease for our token, once known
        self.leases = {}            #: path -> _Lease of a leased secret
        self.log = None             #: set by start_renewal
        self.on_expired = None      #: func(reason) when renewal finally fails

    # -- requests (blocking: before the loop, or in the worker)
    def request(self, method, path, body=None, auth=True):
        """One Vault API call, JSON in and out (retries as SPECS.md 2.3 says,
        in _HttpClient); logs in again once on 403 when AppRole is configured."""
        if not self.address:
            raise _Unavailable("VAULT_ADDR is not set; set it to Vault's address, like "
                               "https://vault.example:8200")
        relogin = auth and self.role_id is not None
        while True:
            if auth and self.token is None:
                self.login()
            headers = {}
            if auth:
                headers["X-Vault-Token"] = self.token
            if self.namespace:
                headers["X-Vault-Namespace"] = self.namespace
            try:
                answer = self.client.request(method, path, body, headers)
            except _HttpError as error:
                if error.status == 403 and relogin:
                    relogin, self.token = False, None
                    continue
                if error.status is None:
                    raise _Unavailable("cannot reach Vault at %s: %s; check VAULT_ADDR and "
                                       "the network" % (self.address, error.reason))
                if error.status == 0:
                    raise _Unavailable("Vault answered %s /v1/%s with something that is not "
                                       "JSON; is VAULT_ADDR Vault?" % (method, path))
                raise _Unavailable("Vault answered %d to %s /v1/%s: %s"
                                   % (error.status, method, path, error.reason))
            return answer

    def login(self):
        """AppRole login (SPECS.md 2.4): POST auth/approle/login -> auth.client_token."""
        if self.role_id is None:
            raise _Unavailable("no Vault token: set VAULT_TOKEN, or VAULT_ROLE_ID and "
                               "VAULT_SECRET_ID to log in with AppRole")
        body = {"role_id": self.role_id}
        if self.secret_id is not None:
            body["secret_id"] = self.secret_id
        auth = self.request("POST", "auth/approle/login", body, auth=False).get("auth") or {}
        if not auth.get("client_token"):
            raise _Unavailable("the AppRole login answered no token")
        self.token = auth["client_token"]
        self.token_lease = _Lease("token", None, int(auth.get("lease_duration") or 0),
                                  bool(auth.get("renewable")))

    def fetch(self, location):
        """GET /v1/<path>; a leased answer is kept and shared."""
        path = location.address.strip("/")
        lease = self.leases.get(path)
        if lease is not None:
            return lease.data, None         # dynamic credentials: one set for everyone
        self.secrets.used.add("VAULT")
        response = self.request("GET", path)
        data = response.get("data")
        if (isinstance(data, dict) and isinstance(data.get("metadata"), dict)
                and "data" in data):
            data = data["data"]             # KV v2: the secret is under data.data
        if data is None:
            raise _Unavailable("Vault has no data at /v1/%s (deleted?)" % path)
        if response.get("lease_id"):
            self.leases[path] = _Lease(response["lease_id"], response["lease_id"],
                                       int(response.get("lease_duration") or 0),
                                       bool(response.get("renewable")), data)
        return data, None

    # -- renewal (in the loop; requests in the worker)
    def start_renewal(self, loop, log, on_expired):
        """Renew the token and each renewable lease at 2/3 of its TTL."""
        self.log, self.on_expired = log, on_expired
        if self.token is not None and self.token_lease is None:
            try:
                data = self.request("GET", "auth/token/lookup-self").get("data") or {}
            except _Unavailable as error:
                log.event("vault: cannot look up the token, so it is not renewed: %s" % error,
                          "warning", event="vault-renew-failed")
                data = {}
            self.token_lease = _Lease("token", None, int(data.get("ttl") or 0),
                                      bool(data.get("renewable")))
        for lease in [self.token_lease] + list(self.leases.values()):
            if lease is not None and lease.renewable and lease.duration > 0:
                lease.keeper = _LeaseKeeper(
                    loop, lease.name, lease.duration, lambda lease=lease: self._renew(lease),
                    self._on_renewed, self._on_retry, self._expired)

    def _renew(self, lease):
        """Ask Vault for more time (in the worker); the seconds granted."""
        if lease.lease_id is None:
            return (self.request("POST", "auth/token/renew-self", {}).get("auth")
                    or {}).get("lease_duration")
        return self.request("POST", "sys/leases/renew",
                            {"lease_id": lease.lease_id,
                             "increment": lease.keeper.ttl}).get("lease_duration")

    def _on_renewed(self, keeper):
        """Say so: a renewal is rare, and the record is how a user sees it works."""
        self.log.event(VAULT_RENEWED_MSG % (keeper.name, keeper.ttl),
                       event="vault-renewed", lease=keeper.name, ttl=keeper.ttl)

    def _on_retry(self, keeper, reason, delay):
        """A renewal failed; the keeper tries again while time is left."""
        self.log.event(VAULT_RENEW_FAILED_MSG % (keeper.name, reason, delay), "warning",
                       event="vault-renew-failed", lease=keeper.name)

    def _expired(self, keeper, reason):
        """Renewal finally failed: the --vault-renew-failure policy decides."""
        message = VAULT_EXPIRED_MSG % (keeper.name, reason)
        self.log.event(message, "error", event="vault-expired", lease=keeper.name)
        if self.on_expired is not None:
            self.on_expired(message)


# -- resolution

_SKIPPED = object()     # a location left out under --allow-unresolved


class _Secrets(object):
    """Resolves location strings for one run of procwrap, and holds its settings.

    Providers (and so AWS clients, the Vault token and leases) live as long
    as this object; fetched documents live for one pass, begun by begin(),
    so fifty variables read from five documents cost five fetches.
    """
    suffix = RESOLVE_SUFFIX     #: NAME<suffix>=LOCATION is resolved into NAME
    depth = RESOLVE_DEPTH       #: how often a value that is a location is followed
    locations = ()              #: --env-locations: documents of variables, merged
    strategy = "SHALLOW"        #: how those documents merge
    allow_unresolved = False    #: leave out what cannot be fetched, with a warning
    ttl = None                  #: seconds after which a restart resolves again
    redact = None               #: the _Redactor that learns each value resolved

    def __init__(self, environ, config=None, **settings):
        self.environ = environ          #: procwrap's environment (ENV:, credentials)
        self.config = config            #: the dict CONFIG: locations read
        self.providers = {}             #: provider name -> instance, made on first use
        self.raw = {}                   #: (provider, address) -> (raw, hint), this pass
        self.documents = {}             #: (provider, address, format) -> parsed, this pass
        self.fetches = 0                #: fetches, over every pass
        self.used = set()               #: 'AWS', 'VAULT': whose credentials were used
        self.notes = []                 #: (level, message) to log once the log exists
        self.top = {}                   #: what the last top-level pass resolved (name -> value)
        self.resolved = {}              #: every variable resolved, for the report and --log-secrets
        self.written = None             #: the --env-output-file's _OwnPath, once written
        for key, value in settings.items():
            if not hasattr(_Secrets, key):
                raise TypeError("unknown _Secrets setting %r" % key)
            setattr(self, key, value)
        if self.redact is None:
            self.redact = _Redactor()

    def begin(self):
        """Start a resolution pass: forget fetched documents (providers stay)."""
        self.raw.clear()
        self.documents.clear()

    def resolve(self, text, where, default_format=None):
        """The value at location `text` (a Secret, or a dict or list of them)."""
        return self.located(text, where, default_format)[1]

    def located(self, text, where, default_format=None):
        """(the location `text` parsed, the value at it): the location says
        where a value that is not what was wanted came from."""
        value, first = text, None
        for _ in range(self.depth + 1):
            location = _parse_location(value, where)
            first = first or location
            value = self.value(location, where, default_format)
            if not (isinstance(value, str) and _is_location(value)):
                self.redact.add(value)
                return first, _secret(value)
        raise SecretError(UNRESOLVED_MSG % (where, location.shown,
                                            "the value is still a location after %s; "
                                            "break the loop or raise --resolve-depth"
                                            % _plural(self.depth + 1, "lookup")))

    def value(self, location, where, default_format=None):
        """One lookup: the document, or what its JSON Path selects."""
        document = self.document(location, where, default_format)
        if location.path is None:
            return document
        if not isinstance(document, (dict, list)):
            raise SecretError(UNRESOLVED_MSG % (where, location.shown,
                                                "|JP: needs a document, and this is text; "
                                                "name its format, like !json"))
        found = _jsonpath(document, location.path, where)
        if not found:
            keys = ("; its keys: " + ", ".join(sorted(map(str, document)))
                    if isinstance(document, dict) else "")
            raise SecretError(UNRESOLVED_MSG % (where, location.shown,
                                                "the JSON Path selects nothing%s" % keys))
        if len(found) == 1 and not location.path.rstrip().endswith(("[*]", "*")):
            return found[0]
        return found

    def document(self, location, where, default_format=None):
        """The parsed document at a location, fetched once per pass."""
        key = (location.provider, location.address)
        try:
            if key not in self.raw:
                provider = self.providers.get(location.provider)
                if provider is None:
                    provider = SECRET_PROVIDERS[location.provider](self)
                    self.providers[location.provider] = provider
                self.raw[key] = provider.fetch(location)
                self.fetches += 1
            raw, hint = self.raw[key]
            fmt = (location.format or hint or default_format
                   or ("json" if location.path else None))
            if key + (fmt,) not in self.documents:
                self.documents[key + (fmt,)] = _parse_document(raw, fmt, location.shown,
                                                               self.environ)
            return self.documents[key + (fmt,)]
        except _Unavailable as error:
            raise SecretError(UNRESOLVED_MSG % (where, location.shown, error))

    def variables(self, wanted, env):
        """{name: Secret} from [(name, location or template, where)]; templates
        last, rendered from `env` and what was resolved."""
        resolved, templates = {}, []
        for name, text, where in wanted:
            if _is_template(text):
                templates.append((name, text, where))
                continue
            value = self._resolve_or_skip(name, text, where)[1]
            if value is not _SKIPPED:
                resolved[name] = Secret(_env_string(value))
        values = dict(env)
        values.update(resolved)
        for name, text, where in templates:
            resolved[name] = values[name] = Secret(_render_template(text, values, where))
            self.redact.add(resolved[name])
        self.resolved.update(resolved)
        return resolved

    def _resolve_or_skip(self, label, text, where, default_format=None):
        """located(); under --allow-unresolved a failure is a warning and
        (None, _SKIPPED).  `label` (None: the location as shown) names it."""
        try:
            return self.located(text, where, default_format)
        except SecretError as error:
            if not self.allow_unresolved:
                raise
            if label is None:
                label = _parse_location(text, where).shown
            self.notes.append(("warning", SKIPPED_SECRET_MSG % (label, error)))
            return None, _SKIPPED

    def documents_env(self, locations, where, checker=None):
        """{name: Secret} of the dictionaries at `locations`, merged in order."""
        documents = []
        for text in locations:
            location, document = self._resolve_or_skip(None, text, where, "dotenv")
            if document is _SKIPPED:
                continue
            if not isinstance(document, dict):
                raise SecretError(UNRESOLVED_MSG % (where, location.shown,
                                                    "it is not a dictionary of variables; "
                                                    "name its format, like !json"))
            documents.append(document)
        merged = _merge(documents, self.strategy, "--merge-strategy")
        variables = dict((str(k), Secret(_env_string(v))) for k, v in merged.items())
        # NAME_FOR_PROCWRAP_TO_RESOLVE in a document is a location too, as in
        # procwrap's own environment (proc_wrapper does the same).
        variables, wanted = _split_resolvable(variables, self.suffix)
        variables.update(self.variables(wanted, dict(self.environ, **variables)))
        self.resolved.update(variables)
        return variables

    def entry_value(self, kind, name, text, where, env, checker):
        """An entry's valueFrom: a location's value, or a template rendered
        from `env`; None when it is left out (--allow-unresolved)."""
        if kind == "template":
            try:
                value = Secret(_render_template(text, env, where))
            except ConfigError as error:
                checker.problems.extend(error.problems)
                return ""
            self.redact.add(value)
            return value
        return self.variables([(name, text, where)], env).get(name)

    def top_level(self, environ, checker=None):
        """(inherited, resolved): procwrap's environment without PROCWRAP_* and
        the variables to resolve, and what those and --env-locations give."""
        inherited, wanted = _split_resolvable(environ, self.suffix)
        resolved = self.documents_env(self.locations, "--env-locations")
        resolved.update(self.variables(wanted, dict(inherited, **resolved)))
        self.top = resolved
        return inherited, resolved

    def write_output(self, path, owner=None):
        """--env-output-file: the top-level resolved variables, 0600."""
        if self.written is None:
            self.written = _env_output(path)
        _write_env_file(self.written, self.top, owner)

    def credentials(self):
        """Variables holding the credentials procwrap used, which children
        get only when named in the pass list."""
        names = []
        if "VAULT" in self.used:
            names += ["VAULT_TOKEN", "VAULT_ADDR", "VAULT_ROLE_ID", "VAULT_SECRET_ID"]
        if "AWS" in self.used:
            names += ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        # proc_wrapper's credentials are procwrap's to use (the reporting).
        return names + ["PROC_WRAPPER_API_KEY", "PROC_WRAPPER_ROLLBAR_ACCESS_TOKEN"]

    def start_renewal(self, loop, log, on_expired):
        """Keep Vault's token and leases alive from `loop`, if Vault was used."""
        vault = self.providers.get("VAULT")
        if vault is not None and "VAULT" in self.used:
            vault.start_renewal(loop, log, on_expired)


class _CheckingSecrets(_Secrets):
    """The stand-in for _Secrets in `procwrap check` (and the look before a
    run fetches anything): location strings are parsed, problems go to the
    checker, nothing is fetched, every variable to resolve is empty.  Counts
    what it saw in `found`, so a run that needs no resolution skips it."""
    found = 0                   #: locations and templates seen

    def __init__(self, environ, **settings):
        settings["ttl"] = None      # nothing resolved, nothing to resolve again
        _Secrets.__init__(self, environ, **settings)

    def _check(self, text, where, checker, template=False):
        """Count a location or template, and parse a location."""
        self.found += 1
        if not template:
            _check_location(text, where, checker)

    def top_level(self, environ, checker=None):
        """(inherited, {name: ''}), each location parsed."""
        inherited, wanted = _split_resolvable(environ, self.suffix)
        for name, text, where in wanted:
            self._check(text, where, checker)
        for text in self.locations:
            self._check(text, "--env-locations", checker)
        return inherited, dict((name, "") for name, _, _ in wanted)

    def entry_value(self, kind, name, text, where, env, checker):
        """'' for a valueFrom, its location parsed."""
        self._check(text, where, checker, template=(kind == "template"))
        return ""

    def documents_env(self, locations, where, checker=None):
        """No variables from an envFrom, its location parsed."""
        for text in locations:
            self._check(text, where, checker)
        return {}


def _split_resolvable(environ, suffix):
    """(environ without PROCWRAP_* and NAME<suffix> variables, [(NAME, location, variable)])."""
    inherited, wanted = {}, []
    suffixes = (suffix, PROC_WRAPPER_SUFFIX)
    for key, value in environ.items():
        if key.startswith("PROCWRAP_"):
            continue
        for end in suffixes:
            if key.endswith(end) and len(key) > len(end):
                wanted.append((key[:-len(end)], value, key))
                break
        else:
            inherited[key] = value
    return inherited, sorted(wanted)


def _check_location(text, where, checker):
    """procwrap check: parse a location (or template) without fetching it."""
    if not _is_template(text):
        try:
            _parse_location(text, where)
        except ConfigError as error:
            checker.problems.extend(error.problems)


class _EnvBuilder(object):
    """Assembles children's environments: procwrap's own (PROCWRAP_* and the
    variables to resolve taken out, the pass list applied), plus what the
    top-level locations resolve to; each entry then adds its own and finish()
    takes out the credentials procwrap used.

    With a _CheckingSecrets (procwrap check) nothing is fetched: location
    strings are parsed, and resolved variables are empty.
    """

    def __init__(self, environ, patterns, secrets, checker):
        self.environ = environ          #: procwrap's environment
        self.patterns = patterns        #: env.pass / --env-pass globs; None passes all
        self.secrets = secrets          #: the _Secrets that resolves, and its settings
        inherited, resolved = secrets.top_level(environ, checker)
        if patterns is not None:
            import fnmatch
            inherited = dict((k, v) for k, v in inherited.items()
                             if any(fnmatch.fnmatchcase(k, p) for p in patterns))
        self.base = dict(inherited)     #: the environment every child starts from
        self.base.update(resolved)
        self.secret_names = set(resolved)   #: variables whose values are secrets

    def value(self, kind, name, text, where, env, checker):
        """An entry's valueFrom (see _Secrets.entry_value)."""
        return self.secrets.entry_value(kind, name, text, where, env, checker)

    def documents(self, text, where, checker):
        """An entry's envFrom location: {name: value}."""
        return self.secrets.documents_env([text], where, checker)

    def finish(self, env):
        """Take out the credentials procwrap used and the child inherited,
        unless the pass list names them exactly (a glob does not count)."""
        dropped = [name for name in self.secrets.credentials()
                   if name in env and env[name] == self.environ.get(name)
                   and name not in (self.patterns or ())]
        for name in dropped:
            del env[name]
        note = ("info", CREDENTIALS_MSG % ", ".join(dropped))
        if dropped and note not in self.secrets.notes:
            self.secrets.notes.append(note)
        return env


def _resolve_environment(environ, patterns=None, secrets=None, **settings):
    """(the environment children start from, the _Secrets that made it):
    `environ` without PROCWRAP_* and without the variables to resolve, the
    pass list `patterns` applied, plus what those variables and the
    settings' locations resolve to, in one pass (a new pass of `secrets`
    when given, so its providers and counts carry over)."""
    if secrets is None:
        secrets = _Secrets(environ, **settings)
    else:
        secrets.begin()
    return _EnvBuilder(environ, patterns, secrets, None).base, secrets


def _write_env_file(own, values, owner=None):
    """Write resolved variables to an _OwnPath, created 0600, atomically: JSON
    for .json, else dotenv behind a marker comment, single-quoted (only \\
    and \' escaped; python-dotenv still expands ${NAME} in them unless read
    with interpolate=False)."""
    if own.path.endswith(".json"):
        import json
        text = json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    else:
        text = "%s (pid %d); removed when it exits\n" % (ENV_OUTPUT_MARKER.decode(),
                                                         os.getpid())
        text += "".join("%s='%s'\n" % (name, value.replace("\\", "\\\\").replace("'", "\\'"))
                        for name, value in sorted(values.items()))
    own.write(text.encode("utf-8", "surrogateescape"), owner)


def _env_output(path):
    """The _OwnPath of --env-output-file: a dotenv one carries a marker, so a
    leftover of a killed procwrap is replaced; a JSON one cannot."""
    return _OwnPath(path, "--env-output-file", 0o600,
                    None if path.endswith(".json") else _has_marker(ENV_OUTPUT_MARKER))


def resolve_config(config, locations=(), suffix=CONFIG_RESOLVE_SUFFIX,
                   max_depth=CONFIG_RESOLVE_DEPTH, merge_strategy="SHALLOW", environ=None,
                   resolve_depth=RESOLVE_DEPTH):
    """A new dict: `config` with every KEY__to_resolve: LOCATION replaced by
    KEY: value, in dicts up to `max_depth` deep (lists of dicts count too).

    The documents at `locations` are merged first, in order (later ones
    win), then `config` on top.  A key that is the bare suffix injects the
    dictionary it resolves to into its own dict (explicit keys win).
    CONFIG:$.path locations read the merged config; ENV: reads `environ`
    (os.environ by default)::

        >>> procwrap.resolve_config({"db": {"password__to_resolve": "ENV:DB_PASSWORD"}},
        ...                         environ={"DB_PASSWORD": "hunter2"})
        {'db': {'password': [secret]}}

    Raises ConfigError for a malformed location, SecretError for one that
    cannot be fetched.
    """
    if not isinstance(config, dict):
        raise ConfigError("resolve_config: config must be a dict, got %s" % _type_name(config))
    secrets = _Secrets(os.environ if environ is None else environ, depth=resolve_depth)
    documents = []
    for index, text in enumerate(locations):
        where = "locations[%d]" % index
        location, document = secrets.located(text, where, default_format="json")
        if not isinstance(document, dict):
            raise SecretError(UNRESOLVED_MSG % (where, location.shown,
                                                "it is not a dictionary; name its format, "
                                                "like !json"))
        documents.append(document)
    secrets.config = _merge(documents + [config], merge_strategy, "merge_strategy")
    return _resolve_tree(secrets.config, secrets, suffix, max_depth, "config", 1)


def _resolve_tree(tree, secrets, suffix, max_depth, where, depth):
    """resolve_config's walk: a resolved copy of one dict (and what is under it)."""
    result, injected = {}, []
    for key, value in tree.items():
        place = "%s.%s" % (where, key)
        if isinstance(key, str) and key.endswith(suffix):
            if depth > max_depth:
                raise ConfigError("%s: deeper than max_depth=%d, so it would not be resolved; "
                                  "raise max_depth or move it up" % (place, max_depth))
            if not isinstance(value, str):
                raise ConfigError("%s: expected a location string, got %s"
                                  % (place, _type_name(value)))
            location, resolved = secrets.located(value, place)
            if key == suffix:
                if not isinstance(resolved, dict):
                    raise SecretError(UNRESOLVED_MSG % (place, location.shown,
                                                        "a bare %r key injects a dictionary, and "
                                                        "this is not one" % suffix))
                injected.append(resolved)
            else:
                result[key[:-len(suffix)]] = resolved
        else:
            result[key] = _resolve_value(value, secrets, suffix, max_depth, place, depth)
    for document in injected:
        for key, value in document.items():
            result.setdefault(key, value)
    return result


def _resolve_value(value, secrets, suffix, max_depth, where, depth):
    """A copy of one config value, with the dicts in it resolved."""
    if isinstance(value, dict):
        return _resolve_tree(value, secrets, suffix, max_depth, where, depth + 1)
    if isinstance(value, list):
        return [_resolve_value(item, secrets, suffix, max_depth, "%s[%d]" % (where, index), depth)
                for index, item in enumerate(value)]
    return value


#: Provider name -> class; a location's upper-case prefix must be one of these.
SECRET_PROVIDERS = {
    "FILE": _FileProvider,
    "ENV": _EnvProvider,
    "PLAIN": _PlainProvider,
    "CONFIG": _ConfigProvider,
    "AWS_SM": _SecretsManagerProvider,
    "AWS_S3": _S3Provider,
    "AWS_SSM": _ParameterStoreProvider,
    "VAULT": _VaultProvider,
}


# =============================================================================
# Probes
# Kubernetes-style probes run inside the loop: a Probe times its checks and
# counts results against its thresholds; each check (exec, httpGet,
# tcpSocket, file, heartbeat, pidFile, notify) reports back once, never
# blocks, and is cut off at its timeout.
# =============================================================================


class _Thresholds(object):
    """Kubernetes' rule: the result flips only after a run of identical
    consecutive results reaches successThreshold or failureThreshold."""

    def __init__(self, success_threshold, failure_threshold, initial):
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.result = initial       #: True (passing), False (failing), None (not yet known)
        self._last = None           #: the result of the current run
        self._run = 0               #: its length

    def record(self, ok):
        """Count one result; True when `result` flipped."""
        if ok == self._last:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        needed = self.success_threshold if ok else self.failure_threshold
        if self._run >= needed and self.result != ok:
            self.result = ok
            return True
        return False


class _Probe(object):
    """One probe of one process: a check every period, counted against the
    thresholds; on_flip(probe) when the result changes.

    Kubernetes' initial results: liveness passes, readiness fails, startup
    is unknown.  A liveness or startup probe that fails is put on hold
    until start() is called for the next instance of the process.
    """
    check = None            #: the check in flight, or None
    failures = 0            #: failed checks, ever (a metric)
    message = ""            #: what the last check said

    def __init__(self, spec, process, loop, on_flip, health):
        self.spec = spec                #: the ProbeSpec
        self.process = process          #: the Process probed
        self.loop = loop
        self.on_flip = on_flip          #: func(probe) when the result flips
        self.health = health            #: the _Health: heartbeats, notify state
        self.thresholds = None
        self._timer = None              #: the next check
        self._deadline = None           #: the in-flight check's timeout
        self.reset()

    @property
    def kind(self):
        """liveness, readiness or startup (hooks: postStart, preStop)."""
        return self.spec.kind

    @property
    def result(self):
        """True passing, False failing, None not known yet."""
        return self.thresholds.result

    def reset(self):
        """Back to the initial result, as for a new instance of the process."""
        initial = {"liveness": True, "readiness": False}.get(self.spec.kind)
        self.thresholds = _Thresholds(self.spec.success_threshold, self.spec.failure_threshold,
                                      initial)

    def start(self):
        """Begin probing the running process: the first check after
        initialDelaySeconds counted from the process's start."""
        self.stop()
        when = self.process.started_at + self.spec.initial_delay
        self._timer = self.loop.call_later(max(0.0, when - self.loop.clock()), self.tick)

    def stop(self):
        """No more checks; abandon the one in flight."""
        for name in ("_timer", "_deadline"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)
        if self.check is not None:
            check, self.check = self.check, None
            check.cancel()

    def tick(self):
        """Time for a check (unless the last one is still running)."""
        self._timer = self.loop.call_later(self.spec.period, self.tick)
        if self.check is None:
            self.run_check()

    def poke(self):
        """Something it watches happened (a heartbeat, READY=1): check now."""
        if self._timer is not None and self.check is None:
            self.run_check()

    def run_check(self):
        """Start one check, with its timeout armed."""
        self.check = _CHECKS[self.spec.handler](self)
        self._deadline = self.loop.call_later(self.spec.timeout, self.on_deadline)
        self.check.start()

    def on_deadline(self):
        """The check took longer than timeoutSeconds: a failure."""
        self._deadline = None
        if self.check is not None:
            self.check.cancel()
            self.done(False, "timed out after %s s" % _format_seconds(self.spec.timeout))

    def _settle(self, message):
        """The check in flight is over: disarm its timeout, keep its message.
        False when there was none (it already timed out, or stopped)."""
        if self.check is None:
            return False
        self.check = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.message = message
        return True

    def done(self, ok, message):
        """A check's outcome: count it; tell the owner when the result flips."""
        if not self._settle(message):
            return
        if not ok:
            self.failures += 1
        if self.thresholds.record(ok):
            if not ok and self.spec.kind in ("liveness", "startup"):
                self.stop()             # on hold until the next instance
            self.on_flip(self)


class _Hook(_Probe):
    """A lifecycle hook, run once: its check, cut off at its timeout, then on_done(ok, message)."""

    def __init__(self, spec, process, loop, health, on_done):
        _Probe.__init__(self, spec, process, loop, None, health)
        self.on_done = on_done          #: func(ok, message)

    def done(self, ok, message):
        """The hook's one outcome, to on_done (no thresholds: hooks run once)."""
        if self._settle(message):
            self.on_done(ok, message)


class _Check(object):
    """A check's interface: start(), cancel(), and report(ok, message) once."""

    def __init__(self, probe):
        self.probe = probe              #: the Probe (or _Hook) it reports to
        self.options = probe.spec.options

    def start(self):
        """Begin the check; report() follows, now or from the loop."""
        raise NotImplementedError

    def cancel(self):
        """Abandon it (timed out, or the probe stopped): nothing by default."""

    def report(self, ok, message):
        """Tell the probe, unless it has moved on (a timed-out exec that exits
        later must not count for the check after it)."""
        if self.probe.check is self:
            self.probe.done(ok, message)


class _ExecCheck(_Check):
    """exec: the command exits 0.  It runs where its process runs, with the
    process's environment, user and working directory (Process.run_command);
    the end of its output goes into the message, as the kubelet puts it in
    the event.  At the timeout its group gets SIGKILL."""
    command = None          #: the running command, until it is done

    def start(self):
        """Start the command; on_exit gets its status and output."""
        argv = self.options["command"]
        try:
            self.command = self.probe.process.run_command(argv, self.on_exit)
        except (OSError, _SpawnError) as error:
            return self.report(False, "cannot run %s: %s" % (
                argv[0], getattr(error, "strerror", None) or error))

    def on_exit(self, wait_status, output):
        """Exit 0 passes; a signal is described; its output follows."""
        self.command = None
        status = _exit_status(wait_status)
        message = ("exit status %d" % status if status < 128 else _describe_wait(wait_status))
        output = self.probe.process.log.redact(output.decode("utf-8", "replace").strip())
        self.report(status == 0, message + (": " + output if output else ""))

    def cancel(self):
        """Timed out or stopped: SIGKILL to the command's group."""
        if self.command is not None:
            command, self.command = self.command, None
            command.cancel()


class _SocketCheck(_Check):
    """tcpSocket: a connection opens within the timeout.  A host name is
    resolved in the worker (getaddrinfo blocks), an address is not; then a
    non-blocking connect() to each address in turn until one opens (as the
    kubelet's dialer does: localhost may be ::1 first); subclasses go on from
    on_connected()."""
    sock = None
    over = False            #: cancelled or finished: a late resolution is dropped
    addresses = ()          #: (family, address) still to try

    def start(self):
        """Resolve the host in the worker unless it is an address, then connect."""
        import socket
        host, port = self.options["host"], self.options["port"]
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except (OSError, ValueError):
                continue
            return self.on_resolved([(family, (host, port))], None)
        self.probe.loop.run_in_worker(lambda: [(info[0], info[4]) for info in socket.getaddrinfo(
            host, port, 0, socket.SOCK_STREAM)], self.on_resolved)

    def on_resolved(self, addresses, error):
        """The addresses to try (from the worker's getaddrinfo): the first."""
        if self.over:
            return
        if error is not None:
            return self.finish(False, "cannot resolve %s: %s" % (
                self.options["host"], getattr(error, "strerror", None) or error))
        self.addresses = list(addresses)
        self.connect_next(0)

    def connect_next(self, code):
        """Begin a non-blocking connect to the next address, or report why
        the last one failed when none is left."""
        import socket
        while self.addresses:
            if self.sock is not None:
                self.probe.loop.watch(self.sock, 0)
                self.sock.close()
                self.sock = None
            family, address = self.addresses.pop(0)
            try:
                self.sock = socket.socket(family, socket.SOCK_STREAM)
                self.sock.setblocking(False)
                code = self.sock.connect_ex(address)
            except OSError as error:
                code = error.errno or errno.EINVAL
                continue
            if code in (0, errno.EINPROGRESS):
                return self.watch(self.on_writable, write=True)
        self.finish(False, "cannot connect to %s:%d: %s" % (
            self.options["host"], self.options["port"], os.strerror(code)))

    def watch(self, func, write=False):
        """Wait for the socket to be readable (or writable) once more."""
        self.probe.loop.watch(self.sock, _WRITE if write else _READ, func)

    def send(self, data):
        """Send a request or a frame (small: it fits a socket buffer), then
        wait for the answer in on_readable()."""
        try:
            self.sock.sendall(data)
        except OSError as error:
            return self.finish(False, "cannot send to the server: %s" % error)
        self.watch(self.on_readable)

    def on_writable(self):
        """The connect finished: SO_ERROR says how (a failure tries the next address)."""
        import socket
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            return self.connect_next(code)
        self.on_connected()

    def on_connected(self):
        """Connected: that is all tcpSocket asks."""
        self.finish(True, "connected")

    def finish(self, ok, message):
        """Close the socket and report."""
        self.cancel()
        self.report(ok, message)

    def cancel(self):
        """Forget the socket (timed out, finished or stopped)."""
        self.over = True
        if self.sock is not None:
            self.probe.loop.watch(self.sock, 0)
            self.sock.close()
            self.sock = None


class _HttpCheck(_SocketCheck):
    """httpGet: GET path answers 200-399 (redirects are not followed: a 3xx
    passes, as the kubelet's final 3xx does).  HTTPS is not verified, as in
    Kubernetes.  Only the status line is read."""
    _buffer = b""

    def on_connected(self):
        """Connected: wrap in TLS for HTTPS, else send the request."""
        if self.options["scheme"] == "HTTPS":
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(self.sock, do_handshake_on_connect=False,
                                            server_hostname=self.options["host"])
            return self.handshake()
        self.send_request()

    def handshake(self):
        """One step of a non-blocking TLS handshake."""
        import ssl
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.watch(self.handshake)
        except ssl.SSLWantWriteError:
            return self.watch(self.handshake, write=True)
        except (ssl.SSLError, OSError) as error:
            return self.finish(False, "TLS handshake failed: %s" % error)
        self.send_request()

    def send_request(self):
        """Send the GET with the kubelet's default headers, overridden by httpHeaders."""
        options = self.options
        headers = [("Host", "%s:%d" % (options["host"], options["port"])),
                   ("User-Agent", "procwrap-probe/" + __version__), ("Accept", "*/*"),
                   ("Connection", "close")]
        for name, value in options["headers"]:
            headers = [h for h in headers if h[0].lower() != name.lower()]
            if value:       # as the kubelet: an empty value removes the header
                headers.append((name, value))
        request = "GET %s HTTP/1.1\r\n%s\r\n\r\n" % (
            options["path"], "\r\n".join("%s: %s" % h for h in headers))
        self.send(request.encode("latin-1"))

    def on_readable(self):
        """Read until the status line is complete, then judge its code."""
        import ssl
        try:
            data = self.sock.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except OSError as error:
            return self.finish(False, "no answer: %s" % error)
        self._buffer += data
        line, newline, _ = self._buffer.partition(b"\r\n")
        if not newline and data and len(self._buffer) < 8192:
            return
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return self.finish(False, "not an HTTP answer")
        code = int(parts[1])
        self.finish(200 <= code < 400, "HTTP %d" % code)


class _FileCheck(_Check):
    """file: the path exists, and was modified within maxAgeSeconds if given."""

    def start(self):
        """stat() the file; compare its age."""
        path, max_age = self.options["path"], self.options.get("max_age")
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError as error:
            return self.report(False, "%s: %s" % (path, error.strerror))
        if max_age is not None and age > max_age:
            return self.report(False, "%s is %.0f s old" % (path, age))
        self.report(True, "%s exists" % path)


class _PidFileCheck(_Check):
    """pidFile: the pid written in the file is alive (a daemon that forked away)."""

    def start(self):
        """Read the pid; signal 0 says whether it lives."""
        path = self.options["path"]
        try:
            with open(path) as stream:
                pid = int(stream.read().split()[0])
        except (OSError, ValueError, IndexError):
            return self.report(False, "%s holds no pid" % path)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return self.report(False, "pid %d from %s is gone" % (pid, path))
        except PermissionError:
            pass        # alive, someone else's
        if _is_zombie(pid):
            return self.report(False, "pid %d from %s has exited" % (pid, path))
        self.report(True, "pid %d is alive" % pid)


class _EnvCheck(_Check):
    """env: the process's environment has NAME=VALUE (a value procwrap
    resolved from a secret, say), read from /proc/PID/environ (what the
    running program was started with, after any shell before it), else
    from what procwrap gave it (another host, or a pid we may not read).
    The message never holds a value."""

    def start(self):
        process, name = self.probe.process, self.options["name"]
        values = None
        if process.pid is not None and process.spec.remote is None:
            try:
                with open("/proc/%d/environ" % process.pid, "rb") as stream:
                    pairs = stream.read().split(b"\0")
                values = dict(pair.decode("utf-8", "surrogateescape").partition("=")[::2]
                              for pair in pairs if b"=" in pair)
            except OSError:
                values = None
        if values is None:
            values = process.environment.values or {}
        if name not in values:
            return self.report(False, "%s is not set" % name)
        if values[name] != self.options["value"]:
            return self.report(False, "%s differs from the value expected" % name)
        self.report(True, "%s has the value expected" % name)


#: sql probe drivers -> the module that speaks it, and its pip package.
SQL_DRIVERS = {"sqlite": ("sqlite3", None), "postgres": ("pg8000", "pg8000"),
               "mysql": ("pymysql", "PyMySQL")}


class _SqlCheck(_Check):
    """sql: the query runs (and its first column is `expect`, if given), in
    the worker thread, so the loop never waits on a database; the drivers'
    own timeouts are the probe's.  Messages never hold the dsn."""

    def start(self):
        options, timeout = self.options, self.probe.spec.timeout
        if not options.get("dsn"):      # a secret with no value: not sqlite's :memory:
            return self.report(False, "the dsn is empty")
        self.probe.loop.run_in_worker(lambda: _sql_query(options, timeout), self.done)

    def done(self, row, error):
        expect = self.options.get("expect")
        if error is not None:
            return self.report(False, str(error))
        if expect is not None and (row is None or str(row) != expect):
            return self.report(False, "the query's first column is not the value expected")
        self.report(True, "the query ran" + (" and gave the value expected" if expect
                                             is not None else ""))


def _sql_query(options, timeout):
    """Run the query; its first row's first column (None without rows).
    Errors are ProcwrapErrors that say what failed without the dsn."""
    module_name, package = SQL_DRIVERS[options["driver"]]
    module = _require(module_name, package, "driver %s" % options["driver"], "sql probe")
    dsn = options["dsn"]
    try:
        if options["driver"] == "sqlite":
            connection = module.connect(dsn[len("sqlite:///"):] if dsn.startswith(
                "sqlite:///") else dsn, timeout=timeout)
        else:
            from urllib.parse import unquote, urlsplit
            parts = urlsplit(dsn)
            settings = dict(host=parts.hostname or "127.0.0.1", user=unquote(
                parts.username or ""), password=unquote(parts.password or "") or None,
                database=parts.path.lstrip("/") or None)
            if parts.port:
                settings["port"] = parts.port
            if options["driver"] == "postgres":
                connection = module.connect(timeout=timeout, **settings)
            else:
                connection = module.connect(connect_timeout=timeout, read_timeout=timeout,
                                            write_timeout=timeout, **settings)
        try:
            cursor = connection.cursor()
            cursor.execute(options["query"])
            row = cursor.fetchone() if cursor.description else None
        finally:
            connection.close()
    except Exception as error:
        # A driver's error names what it could not do; a dsn is never in
        # what pg8000, PyMySQL or sqlite3 say, but say only the class and
        # the first line, blanked of the dsn, to be sure.
        detail = error.args[0] if error.args else error
        if isinstance(detail, dict) and "M" in detail:
            detail = detail["M"]        # pg8000: the server's fields; M is its message
        elif len(error.args) == 2 and isinstance(detail, int):
            detail = "%d %s" % error.args   # PyMySQL: the server's code and message
        text = (str(detail).splitlines() or [""])[0].replace(dsn, "[dsn]")
        raise UnavailableError("%s: %s" % (type(error).__name__, text[:200]))
    return row[0] if row else None


#: AMQP 0-9-1 (SPECS.md 12.6): the header a client opens with, and the frame types read.
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_AMQP_METHOD, _AMQP_HEARTBEAT = 1, 8
#: field-table value types of a fixed size, in octets (the rest are strings, tables, arrays)
_AMQP_SIZES = {"t": 1, "b": 1, "B": 1, "s": 2, "u": 2, "I": 4, "i": 4, "l": 8, "L": 8,
               "f": 4, "d": 8, "D": 5, "T": 8, "V": 0}


def _amqp_frame(class_id, method_id, arguments=b""):
    """A method frame on channel 0."""
    import struct
    payload = struct.pack(">HH", class_id, method_id) + arguments
    return struct.pack(">BHI", _AMQP_METHOD, 0, len(payload)) + payload + b"\xce"


def _amqp_short(text):
    """A shortstr: one octet of length, then UTF-8 (at most 255 octets)."""
    data = text.encode("utf-8")[:255]
    return bytes([len(data)]) + data


def _amqp_long(data):
    """A longstr: four octets of length, then the octets."""
    import struct
    return struct.pack(">I", len(data)) + data


def _amqp_table(fields):
    """A field table of strings, booleans and tables."""
    body = b""
    for name, value in fields.items():
        if isinstance(value, bool):
            body += _amqp_short(name) + b"t" + bytes([value])
        elif isinstance(value, dict):
            body += _amqp_short(name) + b"F" + _amqp_table(value)
        else:
            body += _amqp_short(name) + b"S" + _amqp_long(value.encode("utf-8"))
    return _amqp_long(body)


def _amqp_strings(data):
    """The longstr values of a field table's top level ({name: text}), the
    rest skipped; stops quietly at a type it does not know (it is only for
    the server's product and version)."""
    import struct
    found, at = {}, 0
    while at < len(data):
        name = data[at + 1:at + 1 + data[at]].decode("utf-8", "replace")
        at += 1 + data[at]
        kind = chr(data[at]) if at < len(data) else "?"
        at += 1
        if kind in ("S", "x", "F", "A"):
            size = struct.unpack(">I", data[at:at + 4])[0]
            if kind == "S":
                found[name] = data[at + 4:at + 4 + size].decode("utf-8", "replace")
            at += 4 + size
        elif kind in _AMQP_SIZES:
            at += _AMQP_SIZES[kind]
        else:
            break
    return found


class _AmqpCheck(_SocketCheck):
    """amqp: an AMQP 0-9-1 connection opens with the url's credentials and
    vhost (header, Start/StartOk with PLAIN, Tune/TuneOk, Open/OpenOk), then
    closes cleanly (Close/CloseOk), all on the loop's non-blocking socket.
    A refusal says the server's reply code and text; no message holds the
    password."""
    _buffer = b""
    _closing = False        #: Close sent after OpenOk: what follows ends it
    server = ""             #: "RabbitMQ 3.10.8", from Connection.Start

    def start(self):
        """Connect, unless the url came out empty (a secret with no value)."""
        if "port" not in self.options:
            return self.report(False, "the url is empty")
        _SocketCheck.start(self)

    def on_connected(self):
        """Connected: the protocol header opens the handshake."""
        self.send(_AMQP_HEADER)

    def on_readable(self):
        """Take in what came; handle every whole frame in it."""
        import struct
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            data, why = b"", str(error)
        else:
            why = "it closed the connection"
        if not data:
            if self._closing:
                return self.finish(True, self.opened())
            return self.finish(False, "the server ended the handshake: " + why)
        self._buffer += data
        while self.sock is not None:
            if self._buffer.startswith(b"AMQP") and len(self._buffer) >= 8:
                header = self._buffer[4:8]      # 0 M m r (0-9-1), or 1 1 M m (0-10)
                return self.finish(False, "the server speaks AMQP %s, not 0-9-1" % "-".join(
                    str(octet) for octet in (header[1:] if header[0] == 0 else header[2:])))
            if self._buffer[0] not in (_AMQP_METHOD, 2, 3, _AMQP_HEARTBEAT):
                return self.finish(False, "not an AMQP server: it answered %s" % (
                    ascii(self._buffer[:24])[1:]))
            if len(self._buffer) < 7:
                return
            kind, _, size = struct.unpack(">BHI", self._buffer[:7])
            if size > 1 << 20:
                return self.finish(False, "not an AMQP server: a frame of %d bytes" % size)
            if len(self._buffer) < size + 8:
                return
            payload, end = self._buffer[7:7 + size], self._buffer[7 + size]
            self._buffer = self._buffer[size + 8:]
            if end != 0xCE:
                return self.finish(False, "not an AMQP server (a frame without its end octet)")
            if kind == _AMQP_METHOD and len(payload) >= 4:
                try:
                    self.on_method(struct.unpack(">HH", payload[:4]), payload[4:])
                except (struct.error, IndexError):
                    return self.finish(False, "not an AMQP server: method %d.%d is malformed"
                                       % struct.unpack(">HH", payload[:4]))
            elif kind != _AMQP_HEARTBEAT:
                return self.finish(False, "the server sent a frame of type %d during the "
                                   "handshake" % kind)

    def on_method(self, method, arguments):
        """One step of the handshake, by the method the server sent."""
        import struct
        options = self.options
        if method == (10, 10):              # Start: versions, properties, mechanisms
            size = struct.unpack(">I", arguments[2:6])[0]
            properties = _amqp_strings(arguments[6:6 + size])
            self.server = " ".join(properties[key] for key in ("product", "version")
                                   if properties.get(key))
            mechanisms = arguments[10 + size:10 + size + struct.unpack(
                ">I", arguments[6 + size:10 + size])[0]].split()
            if b"PLAIN" not in mechanisms:
                return self.finish(False, "the server does not offer PLAIN login (it offers "
                                   "%s)" % b", ".join(mechanisms).decode("latin-1"))
            response = ("\0%s\0%s" % (options["user"], options["password"])).encode("utf-8")
            self.send(_amqp_frame(10, 11, _amqp_table({
                "product": "procwrap", "version": __version__,
                "capabilities": {"authentication_failure_close": True}}) + _amqp_short(
                    "PLAIN") + _amqp_long(response) + _amqp_short("en_US")))
        elif method == (10, 30):            # Tune: agree, without heartbeats
            channels, frame_max, _ = struct.unpack(">HIH", arguments[:8])
            self.send(_amqp_frame(10, 31, struct.pack(">HIH", channels, frame_max or 131072, 0))
                      + _amqp_frame(10, 40, _amqp_short(options["vhost"]) + b"\0\0"))
        elif method == (10, 41):            # OpenOk: done; close as a client should
            self._closing = True
            self.send(_amqp_frame(10, 50, struct.pack(">H", 200) + _amqp_short("probe done")
                                  + struct.pack(">HH", 0, 0)))
        elif method == (10, 51):            # CloseOk
            self.finish(True, self.opened())
        elif method == (10, 50):            # Close from the server: refused
            code = struct.unpack(">H", arguments[:2])[0]
            text = arguments[3:3 + arguments[2]].decode("utf-8", "replace")
            try:
                self.sock.sendall(_amqp_frame(10, 51))
            except OSError:
                pass
            self.finish(False, "refused: %d %s" % (code, text[:200]))
        else:
            self.finish(False, "the server sent method %d.%d during the handshake" % method)

    def opened(self):
        """The message of a check that passed."""
        return "AMQP connection to vhost %s opened%s" % (
            self.options["vhost"], " (%s)" % self.server if self.server else "")


class _HeartbeatCheck(_Check):
    """heartbeat: the process sent a datagram to the status socket within maxAgeSeconds."""

    def start(self):
        """Compare the last heartbeat since this start with maxAgeSeconds."""
        last = self.probe.health.heartbeats.get(self.probe.process.name)
        max_age = self.options["max_age"]
        if last is None or last < self.probe.process.started_at:
            return self.report(False, "no heartbeat yet")
        age = self.probe.loop.clock() - last
        self.report(age <= max_age, "last heartbeat %.1f s ago" % age)


class _NotifyCheck(_Check):
    """notify: the process wrote READY=1 to $NOTIFY_SOCKET since it started."""

    def start(self):
        """Has READY=1 come since this start?"""
        ready = self.probe.health.notified.get(self.probe.process.name)
        self.report(bool(ready), "READY=1 received" if ready else "no READY=1 yet")


class _SleepCheck(_Check):
    """sleep (hooks only): wait that many seconds, then succeed."""
    timer = None

    def start(self):
        """Arm the timer that ends the sleep."""
        self.timer = self.probe.loop.call_later(self.options["seconds"], self.report, True,
                                                "slept")

    def cancel(self):
        """Stop waiting."""
        if self.timer is not None:
            self.timer.cancel()


_CHECKS = {"exec": _ExecCheck, "httpGet": _HttpCheck, "tcpSocket": _SocketCheck,
           "file": _FileCheck, "pidFile": _PidFileCheck, "heartbeat": _HeartbeatCheck,
           "notify": _NotifyCheck, "sleep": _SleepCheck, "env": _EnvCheck, "sql": _SqlCheck,
           "amqp": _AmqpCheck}


# =============================================================================
# Health
# What a process's health is made of and where it is reported: probes and
# lifecycle hooks per process, heartbeats and status lines (the status
# socket), sd_notify from children, and readiness of the whole.
# =============================================================================


#: proc_wrapper's status-update port, which its StatusUpdater sends to (SPECS.md 10.1).
STATUS_UPDATE_PORT = 2373
#: What a status update may carry: counts (whole numbers >= 0), a message,
#: free-form metadata (proc_wrapper's keys, SPECS.md 10.1).
STATUS_UPDATE_KEYS = ("success_count", "error_count", "skipped_count", "expected_count",
                      "last_status_message", "other_runtime_metadata")
STATUS_COUNT_KEYS = STATUS_UPDATE_KEYS[:4]
#: Bytes held of one newline-framed message until its end (more: dropped, counted).
STATUS_UPDATE_MAX = 65536
#: Characters of a last_status_message kept (the rest is cut).
STATUS_MESSAGE_MAX = 1000


class _RunStatus(object):
    """What a run's command said of its progress, merged: the counts, the
    last message, free-form metadata.  `pending` is what the API server
    has not been sent yet; a child never sets procwrap's own keys."""

    def __init__(self):
        self.values = {}                #: everything said so far
        self.pending = {}               #: said since the last report
        self.updates = 0                #: updates taken
        self.rejected = 0               #: updates with nothing usable in them

    def merge(self, message):
        """Take one update; its last_status_message when that changed, else None."""
        taken = {}
        for key in STATUS_COUNT_KEYS:
            value = message.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                taken[key] = value
        text = message.get("last_status_message")
        if isinstance(text, str) and text:
            taken["last_status_message"] = _CONTROL_RE.sub("", text[:STATUS_MESSAGE_MAX])
        metadata = message.get("other_runtime_metadata")
        if isinstance(metadata, dict):
            taken["other_runtime_metadata"] = metadata
        if not taken:
            self.rejected += 1
            return None
        said = taken.get("last_status_message")
        changed = said is not None and said != self.values.get("last_status_message")
        self.values.update(taken)
        self.pending.update(taken)
        self.updates += 1
        return said if changed else None

    def take_pending(self):
        """What to send now (and forget, unless put back after a failure)."""
        pending, self.pending = self.pending, {}
        return pending

    def put_back(self, pending):
        """A report failed: send these with the next one (newer values win)."""
        merged = dict((k, v) for k, v in pending.items() if k in STATUS_UPDATE_KEYS)
        merged.update(self.pending)
        self.pending = merged


def _status_update_env(port):
    """What a child is told of the status-update listener: procwrap's variable
    and proc_wrapper's (its StatusUpdater reads ..._SOCKET_PORT; its README
    names ..._PORT), so either client works unchanged (SPECS.md 10.2)."""
    return {"PROCWRAP_STATUS_UPDATE_PORT": str(port),
            "PROC_WRAPPER_ENABLE_STATUS_UPDATE_LISTENER": "TRUE",
            "PROC_WRAPPER_STATUS_UPDATE_SOCKET_PORT": str(port),
            "PROC_WRAPPER_STATUS_UPDATE_PORT": str(port)}


class _StatusSocket(_Datagrams):
    """The status socket: one JSON object per UDP datagram on 127.0.0.1.

        {"name": "web"}                       a heartbeat from process web
        {"name": "web", "status": "warm"}     a heartbeat and a status line

    Children find it in PROCWRAP_STATUS_ADDRESS (127.0.0.1:PORT) and their
    own name in PROCWRAP_PROCESS.  Trust: UDP carries no sender credentials,
    so any process on the host (in the container's network namespace) can
    send a heartbeat or a status line for any name.  What it can do is
    bounded: keep a heartbeat probe passing, and put a line of 200
    characters, control characters taken out, into the log.  Use notify
    probes, which check the sender's user, where that matters.
    """

    partial = b""           #: the start of a newline-framed message, until its end

    def __init__(self, loop, port, on_message):
        import socket
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        self.address = "127.0.0.1:%d" % sock.getsockname()[1]
        self.port = sock.getsockname()[1]
        _Datagrams.__init__(self, loop, sock, on_message)

    def parse(self, data):
        """The JSON objects a datagram carries: a whole one (procwrap's form),
        or newline-terminated ones, several in a datagram or one across
        several (proc_wrapper's status updates, SPECS.md 10.1; at most
        STATUS_UPDATE_MAX bytes held for one).  None for a datagram that is
        garbage; a framed one's bad lines are counted here."""
        if not self.partial and b"\n" not in data:
            whole = _json_object(data)
            if whole is not None or not data.lstrip().startswith(b"{"):
                return whole        # an object, or garbage (not the start of one)
        pieces = (self.partial + data).split(b"\n")
        self.partial = pieces.pop()
        if len(self.partial) > STATUS_UPDATE_MAX:
            self.partial = b""
            self.bad += 1
        messages = [_json_object(piece) for piece in pieces if piece.strip()]
        self.bad += messages.count(None)
        return [message for message in messages if message is not None]


class _NotifySocket(_Datagrams):
    """$NOTIFY_SOCKET for one child: sd_notify datagrams (READY=1, STATUS=...,
    WATCHDOG=1, STOPPING=1) on an abstract Unix socket.

    Abstract names have no permissions, and /proc/net/unix shows them to
    every user, so the kernel's word on the sender decides: with SO_PASSCRED
    each datagram carries its sender's uid (SCM_CREDENTIALS, unix(7)), and
    only the process's own user (or root) is heard.  The name has a random
    part, so another user cannot bind it first.
    """
    stranger = None         #: uid of the last sender refused
    on_stranger = None      #: func(uid) for the first one refused

    def __init__(self, loop, name, uid, on_message):
        import binascii
        import socket
        self.uid = uid          #: the user the process runs as
        self.credentials = hasattr(socket, "SO_PASSCRED")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for attempt in range(NOTIFY_NAME_TRIES):
            self.address = "@procwrap/%d/%s/%s" % (
                os.getpid(), binascii.hexlify(os.urandom(8)).decode("ascii"), name)
            try:
                sock.bind(_unix_address(self.address))
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE or attempt == NOTIFY_NAME_TRIES - 1:
                    sock.close()
                    raise UsageError("%s: cannot create its notify socket: %s"
                                     % (name, error.strerror))
        if self.credentials:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        _Datagrams.__init__(self, loop, sock, on_message)

    def receive(self):
        """A datagram from the process's user or root; None from anyone else."""
        import socket
        import struct
        if not self.credentials:        # not Linux: no way to tell, take it
            return self.sock.recv(DATAGRAM_MAX)
        size = struct.calcsize("3i")
        data, ancillary, _, _ = self.sock.recvmsg(DATAGRAM_MAX, socket.CMSG_SPACE(size))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                _, uid, _ = struct.unpack("3i", payload[:size])
                if uid in (0, self.uid):
                    return data
                if self.stranger is None and self.on_stranger is not None:
                    self.on_stranger(uid)
                self.stranger = uid
        return None

    def parse(self, data):
        """Newline-separated KEY=VALUE assignments, as a dict."""
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            key, equals, value = line.partition("=")
            if equals:
                fields[key] = value
        return fields


def _at_rest(process):
    """Not running, and as it should be: a one-shot that finished well, or a
    process with autostart: false that is stopped (live and ready both)."""
    return (process.state == _State.EXITED and process.status in process.spec.success_codes
            or process.state == _State.STOPPED and not process.spec.autostart)


class _Health(object):
    """The health of a supervisor's processes, with its own state: probes
    read heartbeats and READY=1 from here, never from the supervisor.

    The supervisor wires each process in (wire), says when one starts
    running or stops (started, stopped), and reports readiness of the whole
    (report_ready); on_change() tells it that something it decides on may
    have changed (a probe flipped, a hook finished).
    """
    ready = False           #: every process ready, as last reported
    status_socket = None    #: the _StatusSocket, when heartbeats or --status-port ask for it
    on_update = None        #: func(process, message) for each status update (reporting)
    readiness = None        #: the readiness file's _OwnPath

    def __init__(self, loop, log, settings, processes, on_change):
        self.loop = loop
        self.log = log
        self.on_change = on_change      #: func(): look at readiness and dependents again
        self.processes = {}             #: name -> Process wired in
        self.probes = {}                #: name -> [Probe]
        self.hooks_pending = set()      #: names whose postStart hook still runs
        self.heartbeats = {}            #: name -> loop time of its last heartbeat
        self.notified = {}              #: name -> READY=1 seen since its start
        self.status_text = {}           #: name -> last STATUS / status message
        #: names of the processes with statusUpdates, and what each said
        self.updating = set(p.name for p in processes if p.spec.status_updates)
        self.run_status = {}            #: name -> _RunStatus
        self.notify_sockets = {}        #: name -> its _NotifySocket
        where = settings.get("where", {})
        if settings.get("readiness_file"):
            self.readiness = _OwnPath(settings["readiness_file"], where.get(
                "readiness_file", "--readiness-file"), 0o644, _has_marker(READINESS_MARKER))
            self.readiness.check()
        self.systemd = os.environ.get("NOTIFY_SOCKET") or None   #: our manager's socket
        handlers = set(spec.handler for p in processes for spec in p.spec.probes)
        port = settings.get("status_port")
        if "heartbeat" in handlers or port is not None or self.updating:
            try:
                self.status_socket = _StatusSocket(loop, port or 0, self.on_status_message)
            except OSError as error:
                raise UsageError("%s: cannot listen on 127.0.0.1:%d: %s; pick another port" % (
                    where.get("status_port", "--status-port"), port or 0, error.strerror))
        for process in processes:
            self.wire(process)
        if self.systemd:
            usec = os.environ.get("WATCHDOG_USEC", "")
            owner = os.environ.get("WATCHDOG_PID", str(os.getpid()))
            if _is_digits(usec) and int(usec) > 0 and owner == str(os.getpid()):
                self._watchdog(int(usec) / 2e6)

    def wire(self, process):
        """A process's probes, hooks and the variables that point it at our sockets."""
        name = process.name
        self.processes[name] = process
        self.probes[name] = [_Probe(spec, process, self.loop, self.on_probe_flip, self)
                             for spec in process.spec.probes]
        if process.spec.pre_stop is not None:
            process.before_stop = self._run_pre_stop
        if process.spec.finish is not None:
            process.after_exit = self._run_finish
        overrides = {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None, "WATCHDOG_PID": None}
        if any(spec.handler == "notify" for spec in process.spec.probes):
            if name not in self.notify_sockets:
                uid = process.spec.user.uid if process.spec.user else os.geteuid()
                notify = self.notify_sockets[name] = _NotifySocket(
                    self.loop, name, uid, lambda fields, name=name: self.on_notify(name, fields))
                notify.on_stranger = lambda uid, name=name: self.log.event(
                    "%s: ignoring sd_notify datagrams from uid %d, which is not the user it "
                    "runs as" % (name, uid), "warning", event="notify-refused", name=name)
            overrides["NOTIFY_SOCKET"] = self.notify_sockets[name].address
        if self.status_socket is not None:
            overrides.update(PROCWRAP_STATUS_ADDRESS=self.status_socket.address,
                             PROCWRAP_PROCESS=name)
        if process.spec.status_updates and self.status_socket is not None:
            self.updating.add(name)
            overrides.update(_status_update_env(self.status_socket.port))
        process.environment.override(overrides)

    def unwire(self, process):
        """A process left the config (reload): its probes end."""
        for probe in self.probes.pop(process.name, ()):
            probe.stop()
        self.processes.pop(process.name, None)
        self.updating.discard(process.name)

    def _watchdog(self, interval):
        """WATCHDOG=1 to systemd at half its WATCHDOG_USEC, while the loop turns."""
        _sd_notify(self.systemd, "WATCHDOG=1")
        self.loop.call_later(interval, self._watchdog, interval)

    # -- what children tell us
    def on_status_message(self, message):
        """A message on the status socket: a heartbeat, maybe with a status
        line; or a status update (proc_wrapper's keys), for the process it
        names, or the one process with statusUpdates when it names none."""
        name = message.get("name")
        if name is None and len(self.updating) == 1:
            name = next(iter(self.updating))
        process = self.processes.get(name) if isinstance(name, str) else None
        if process is None:
            if self.status_socket is not None:
                self.status_socket.bad += 1
            return
        if any(key in message for key in STATUS_UPDATE_KEYS):
            return self.on_status_update(process, message)
        self.heartbeats[name] = self.loop.clock()
        if isinstance(message.get("status"), str):
            self._set_status_text(process, message["status"])
        self._poke(name, "heartbeat")

    def on_status_update(self, process, message):
        """A status update (proc_wrapper's keys): merged into the process's
        run status, logged when its message changes."""
        said = self.run_status.setdefault(process.name, _RunStatus()).merge(message)
        if self.on_update is not None:
            self.on_update(process, message)
        if said is not None:
            self.log.event("%s: status: %s" % (process.name, said), event="status-update",
                           name=process.name, status_message=said)

    def on_notify(self, name, fields):
        """An sd_notify datagram from a child: READY=1, STATUS=..., WATCHDOG=1."""
        process = self.processes.get(name)
        if process is None:
            return
        if fields.get("READY") == "1":
            self.notified[name] = True
        if "STATUS" in fields:
            self._set_status_text(process, fields["STATUS"])
        if fields.get("WATCHDOG") == "1":
            self.heartbeats[name] = self.loop.clock()
            self._poke(name, "heartbeat")
        self._poke(name, "notify")

    def _set_status_text(self, process, text):
        """Keep a process's status line; log it when it changes.  Any local
        process may send one (see _StatusSocket), so control characters
        (a terminal escape in text logs) are taken out."""
        text = _CONTROL_RE.sub("", text[:STATUS_TEXT_MAX])
        if self.status_text.get(process.name) != text:
            self.status_text[process.name] = text
            self.log.event("%s: %s" % (process.name, text), event="status", name=process.name)

    def _poke(self, name, handler):
        """A heartbeat or notification came: probes of that kind check now."""
        for probe in self.probes[name]:
            if probe.spec.handler == handler:
                probe.poke()

    # -- probes and hooks
    def started(self, process):
        """A new instance runs: probes start over; startup gates the others;
        its postStart hook runs."""
        self.notified.pop(process.name, None)
        self.heartbeats.pop(process.name, None)
        self.run_status.pop(process.name, None)     # a new run says its own progress
        probes = self.probes[process.name]
        for probe in probes:
            probe.reset()
        startup = [p for p in probes if p.kind == "startup"]
        for probe in startup or probes:
            probe.start()
        if process.spec.post_start is not None:
            self.hooks_pending.add(process.name)
            _Hook(process.spec.post_start, process, self.loop, self,
                  lambda ok, message: self._post_start_done(process, ok, message)).run_check()

    def stopped(self, process):
        """It left RUNNING: no more checks."""
        for probe in self.probes[process.name]:
            probe.stop()

    def _post_start_done(self, process, ok, message):
        """lifecycle.postStart finished: ready may follow; a failure kills, as in Kubernetes."""
        self.hooks_pending.discard(process.name)
        if not ok:
            self.log.event("%s: postStart hook failed (%s)" % (process.name, message), "warning",
                           event="hook", name=process.name, hook="postStart", result="failed")
            process.terminate("postStart hook failed")
        else:
            self.log.event("%s: postStart hook done (%s)" % (process.name, message),
                           event="hook", name=process.name, hook="postStart", result="passed")
        self.on_change()

    def _run_pre_stop(self, process, then):
        """lifecycle.preStop before the stop signal, bounded by the stop timeout."""
        def done(ok, message):
            self.log.event("%s: preStop hook %s (%s)"
                           % (process.name, "done" if ok else "failed", message),
                           "info" if ok else "warning", event="hook", name=process.name,
                           hook="preStop", result="passed" if ok else "failed")
            then()
        _Hook(process.spec.pre_stop, process, self.loop, self, done).run_check()

    def _run_finish(self, process, wait_status, then):
        """Its finish command, as s6 runs a service's finish script: with the
        exit code (256 when a signal ended it) and the signal's number, cut
        off at its timeout; then the restart decision."""
        if os.WIFSIGNALED(wait_status):
            code, signum = 256, os.WTERMSIG(wait_status)
        else:
            code, signum = os.WEXITSTATUS(wait_status), 0
        import copy
        spec = copy.copy(process.spec.finish)
        spec.options = {"command": list(spec.options["command"]) + [str(code), str(signum)]}

        def done(ok, message):
            self.log.event("%s: finish command %s (%s)" % (
                process.name, "done" if ok else "failed", message), "info" if ok else "warning",
                event="hook", name=process.name, hook="finish",
                result="passed" if ok else "failed")
            then()
        _Hook(spec, process, self.loop, self, done).run_check()

    def on_probe_flip(self, probe):
        """A probe's result changed: gate, kill or mark ready, and say so once."""
        process, kind = probe.process, probe.kind
        if probe.result:
            self.log.event("%s: %s probe passed (%s)" % (process.name, kind, probe.message),
                           event="probe", name=process.name, probe=kind, result="passed")
            if kind == "startup":
                probe.stop()
                for other in self.probes[process.name]:
                    if other.kind != "startup":
                        other.start()
        else:
            self.log.event("%s: %s probe failed %s (%s)" % (
                process.name, kind, _plural(probe.spec.failure_threshold, "time"),
                probe.message), "warning",
                event="probe", name=process.name, probe=kind, result="failed")
            if kind in ("liveness", "startup"):
                process.terminate("%s probe failed" % kind)
        self.on_change()

    # -- verdicts
    def is_live(self, process):
        """Alive (or finished well for good, or a standby waiting at its gate:
        a singleton another machine runs) and no liveness/startup probe has failed."""
        if _at_rest(process):
            return True
        if process.gating:
            return True
        if process.state not in (_State.STARTING, _State.RUNNING):
            return False
        return all(p.result is not False for p in self.probes.get(process.name, ())
                   if p.kind in ("liveness", "startup"))

    def is_ready(self, process):
        """Running with its startup and readiness probes passed (a one-shot
        that finished well counts as ready, as does one stopped by design)."""
        if _at_rest(process):
            return True
        if process.state != _State.RUNNING or process.name in self.hooks_pending:
            return False
        return all(p.result is True for p in self.probes.get(process.name, ())
                   if p.kind in ("startup", "readiness"))

    # -- reporting the whole
    def report_ready(self, ready, count, total, why=None):
        """Readiness of the whole changed: the readiness file, a record,
        systemd.  `why` it is not, when not for a process (shutting down)."""
        self.ready = ready
        self._readiness_file(ready)         # before the record, which says it is done
        of = "%d of %s ready" % (count, _plural(total, "process"))
        self.log.event("ready: every process is ready" if ready else
                       "not ready: " + (why or of), event="ready" if ready else "not-ready")
        if self.systemd:
            _sd_notify(self.systemd, ("READY=1\n" if ready else "") + "STATUS=" + of)

    def report_stopping(self, reason):
        """The run is ending: tell systemd."""
        if self.systemd:
            _sd_notify(self.systemd, "STOPPING=1\nSTATUS=shutting down (%s)" % reason)

    def _readiness_file(self, ready):
        """Create the readiness file when ready, remove it when not (only if it
        is still the one we created)."""
        if self.readiness is None:
            return
        if not ready:
            return self.readiness.remove()
        try:
            self.readiness.write(READINESS_MARKER + b" (pid %d)\n" % os.getpid())
        except UsageError as error:
            self.log.event(str(error), "warning", event="readiness-file")

    def close(self):
        """The run is over: no readiness file, no sockets."""
        self._readiness_file(False)
        for sock in [self.status_socket] + list(self.notify_sockets.values()):
            if sock is not None:
                sock.close()


# =============================================================================
# Reporting & embedding
# What a run tells the outside: the status updates its command sends
# (proc_wrapper's datagrams), the client of a CloudReactor-style API server
# that reports each execution, the failure webhook, the StatusUpdater a child
# imports, and managed_call() for Python functions run by wrap mode's rules.
# =============================================================================

#: Bounds on a Retry-After the API server asks for (proc_wrapper's).
API_RETRY_MIN, API_RETRY_MAX = 5.0, 600.0


class _ApiReporter(object):
    """One execution on a CloudReactor-style API server (SPECS.md 10.3):
    created before the command starts (a pre-created one is updated
    instead), kept alive by heartbeats that carry what the command said,
    ended by one final update.  Requests run in the loop's worker, one at
    a time; retries wait on the loop's timers, never in a sleep, so signals
    are heard while the server is slow.

    Policy: a 409 at the start is the task's concurrency limit: tried again
    every conflict_retry_delay until conflict_timeout, then the command is
    not started (EX_TEMPFAIL).  A 409 later means the server stopped this
    execution: on_stopped() (the owner stops its command properly).  429,
    502, 503, 504 wait what Retry-After says (within API_RETRY_MIN and
    API_RETRY_MAX), else retry_delay; network errors are tried again too;
    all until error_timeout (creation_timeout at the start, final_timeout
    for the last update).  Anything else, or a deadline passed: a warning
    and no more requests (offline), unless prevent_offline (then the
    command is not started: EX_NOPERM after a 403, else EX_UNAVAILABLE).
    """
    uuid = None             #: the execution's, from the server's answer
    offline = False         #: given up on the server: no more requests
    log_status = True       #: log a changed status message (a supervisor's health does)
    app_heartbeat = None    #: time.time() of the command's last status update
    aborted = False         #: the server stopped it
    ended = False           #: the final update was asked for
    on_stopped = None       #: func(reason) when the server stops the execution

    def __init__(self, loop, log, options, command, hostname=None, pid=None, name=None):
        self.loop = loop
        self.log = log
        self.name = name                #: the supervised process it reports, for messages
        self.options = options          #: the api_* settings (see _OPTIONS)
        self.command = list(command)    #: for process_command
        self.hostname, self.pid = hostname, pid     #: sent when asked
        self.status = _RunStatus()
        self.failed_attempts = 0
        self.timed_out_attempts = 0
        self._heartbeat = None          #: the heartbeat Timer
        self._busy = False              #: a request is in the worker
        self._queued = None             #: (kind, body, done) waiting for it
        self._last_sent = None          #: loop time of the last report that went through
        self._status_sent = False       #: the first status update was reported
        self._update_timer = None       #: a coalesced status report, armed
        self.client = None
        if not options["reporting"]:
            self.offline = True         # status updates are still merged and logged
        else:
            headers = {"Authorization": "Bearer " + options["api_key"],
                       "Accept": "application/json"}
            self.client = _HttpClient(options["api_base_url"], headers=headers,
                                      timeout=options["api_request_timeout"], attempts=1)

    def _say(self, text, *args, **fields):
        """A record, naming the process in a supervisor."""
        if self.name:
            text = "%s: %s" % (self.name, text)
            fields.setdefault("name", self.name)
        self.log.event(text, *args, **fields)

    # -- the start
    def start(self, then):
        """Create (or take up) the execution; then(None) to start the command
        (reported, or offline), or then(status) not to."""
        if self.offline:
            return then(None)
        body = self._start_body()
        given = self.options["task_execution_uuid"]
        if given:
            self.uuid = given
            self._send("start", "PATCH", self._path(), body, lambda answer, error:
                       self._started(answer, error, then))
        else:
            body["task"] = self._task()
            self._send("start", "POST", "api/v1/task_executions/", body,
                       lambda answer, error: self._started(answer, error, then))

    def _path(self, quiet=False):
        return "api/v1/task_executions/%s/%s" % (self.uuid, "?content=false" if quiet else "")

    def _task(self):
        """The task, by name or uuid, and what auto-creation needs."""
        options = self.options
        task = dict(options["auto_create_task_props"] or {})
        if options["task_uuid"]:
            task["uuid"] = options["task_uuid"]
        if options["task_name"]:
            task["name"] = options["task_name"]
        if options["auto_create_task"]:
            task["was_auto_created"] = True
            task.setdefault("passive", True)
            if options["deployment"]:
                task.setdefault("run_environment", {"name": options["deployment"]})
        if options.get("task_is_passive") is not None:
            task["passive"] = options["task_is_passive"]
        if options.get("task_max_concurrency") is not None:
            task["max_concurrency"] = options["task_max_concurrency"]
        return task

    def _start_body(self):
        """RUNNING, when, and the run's settings (SPECS.md 10.3's start row)."""
        options = self.options
        body = {"status": "RUNNING", "started_at": _rfc3339(time.time()),
                "process_command": " ".join(self.command),
                "process_timeout_seconds": options.get("timeout"),
                "process_max_retries": options.get("retries") or 0,
                "process_retry_delay_seconds": options.get("retry_delay"),
                "process_termination_grace_period_seconds": options.get("stop_timeout"),
                "heartbeat_interval_seconds": options["api_heartbeat_interval"],
                "prevent_offline_execution": bool(options["prevent_offline_execution"]),
                "wrapper_family": "procwrap", "wrapper_version": __version__,
                "embedded_mode": bool(options.get("embedded"))}
        for key, field in (("schedule", "schedule"), ("task_is_service", "is_service"),
                           ("task_max_concurrency", "task_max_concurrency"),
                           ("max_conflicting_age", "max_conflicting_age_seconds"),
                           ("task_instance_metadata", "other_instance_metadata")):
            if options.get(key) is not None:
                body[field] = options[key]
        for key, field in (("build_task_execution_uuid", "build"),
                           ("deployment_task_execution_uuid", "deploy")):
            if options.get(key):
                body[field] = {"task_execution": {"uuid": options[key]}}
        if self.hostname:
            body["hostname"] = self.hostname
        if self.pid:
            body["pid"] = self.pid
        return body

    def _started(self, answer, error, then):
        """The server's word on the start."""
        if error is None:
            if isinstance(answer, dict) and isinstance(answer.get("uuid"), str):
                self.uuid = answer["uuid"]
            self._say("reporting to %s as execution %s" % (
                      self.options["api_base_url"], self.uuid), event="api-started", uuid=self.uuid)
            self._arm_heartbeat()
            return then(None)
        status = getattr(error, "status", None)
        if status == 409:
            self._say("the API server would not start another execution of this task "
                      "(409: its concurrency limit) for %s s; not starting the command"
                      % _format_seconds(self.options["api_conflict_timeout"]), "error",
                      event="api-conflict")
            return then(EX_TEMPFAIL)
        if self.options["prevent_offline_execution"]:
            self._say("the API server could not be told of the start (%s); not starting "
                      "the command (--prevent-offline-execution)" % _describe_http(error),
                      "error", event="api-failed")
            return then(EX_NOPERM if status == 403 else EX_UNAVAILABLE)
        self._go_offline(error)
        then(None)

    def _go_offline(self, error):
        """No more requests: the run goes on unreported."""
        if not self.offline:
            self.offline = True
            self._say("the API server could not be reached or refused (%s); carrying on "
                      "without reporting" % _describe_http(error), "warning",
                      event="api-offline")
        self._cancel_timers()

    # -- while it runs
    def _arm_heartbeat(self):
        interval = self.options["api_heartbeat_interval"]
        if interval and interval > 0 and not self.offline and not self.ended:
            self._heartbeat = self.loop.call_later(interval, self._beat)

    def _beat(self):
        """A heartbeat: RUNNING, and what the command said meanwhile."""
        self._heartbeat = None
        self._update()
        self._arm_heartbeat()

    def status_update(self, message):
        """A status update from the command: merged; reported at once when it
        is the first, or when --status-update-interval has passed since the
        last report, else with the next report (coalesced)."""
        said = self.status.merge(message)
        self.app_heartbeat = time.time()
        if said is not None and self.log_status:
            self._say("status: %s" % said, event="status-update", status_message=said)
        if self.offline or self.ended or self.uuid is None or not self.status.pending:
            return
        interval = self.options["status_update_interval"]
        now = self.loop.clock()
        if not self._status_sent and not self._busy:
            self._status_sent = True        # the first goes at once
            return self._update()
        if interval is not None and self._update_timer is None:
            due = 0.0 if self._last_sent is None else self._last_sent + interval - now
            self._update_timer = self.loop.call_later(max(0.0, due), self._coalesced)

    def _coalesced(self):
        self._update_timer = None
        if self.status.pending:
            self._update()

    def attempt_failed(self, timed_out):
        """An attempt failed and another follows: say so."""
        if timed_out:
            self.timed_out_attempts += 1
        else:
            self.failed_attempts += 1
        self._update()

    def _update(self):
        """PATCH RUNNING with what is pending."""
        if self.offline or self.ended or self.uuid is None:
            return
        pending = self.status.take_pending()
        body = {"status": "RUNNING", "failed_attempts": self.failed_attempts,
                "timed_out_attempts": self.timed_out_attempts}
        if self.app_heartbeat is not None:
            body["last_app_heartbeat_at"] = _rfc3339(self.app_heartbeat)
        body.update(pending)
        body["status"] = "RUNNING"

        def done(answer, error):
            if error is None:
                return
            self.status.put_back(pending)
            if getattr(error, "status", None) == 409:
                self._cancel_timers()
                if self.on_stopped is not None:
                    self.on_stopped("the API server stopped this execution (409)")
                return
            self._say("could not report to the API server (%s); trying with the next "
                      "heartbeat" % _describe_http(error), "warning", event="api-failed")
        self._send("update", "PATCH", self._path(quiet=True), body, done)

    # -- the end
    def finish(self, status, exit_code, tail, then):
        """The final update (retried up to final_timeout), then the failure
        notifications; then() once done, whatever the servers said."""
        self.ended = True
        self._cancel_timers()
        options = self.options
        if status != API_SUCCEEDED and (options["failure_webhook"]
                                        or options["rollbar_access_token"]):
            summary = {"status": status, "exit_code": exit_code,
                       "task": options["task_name"] or options["task_uuid"],
                       "execution": self.uuid, "command": " ".join(self.command),
                       "hostname": self.hostname, "finished_at": _rfc3339(time.time()),
                       "log_tail": tail}
            after = then

            def notified(failures, error):
                for text in failures or ():
                    self._say(text, "warning", event="notify-failed")
                after()

            def then():
                self.loop.run_in_worker(lambda: _notify_failure(options, summary), notified)
        if self.offline or self.uuid is None:
            return then()
        body = {"status": "RUNNING"}
        body.update(self.status.take_pending())
        body.update({"status": status, "exit_code": exit_code,
                     "finished_at": _rfc3339(time.time()),
                     "failed_attempts": self.failed_attempts,
                     "timed_out_attempts": self.timed_out_attempts})
        if tail and status != API_SUCCEEDED:
            body["error_log_tail"] = tail

        def done(answer, error):
            if error is not None:
                self._say("could not send the final status %s to the API server (%s)"
                          % (status, _describe_http(error)), "warning", event="api-failed")
            then()
        self._send("final", "PATCH", self._path(quiet=True), body, done)

    def _cancel_timers(self):
        for name in ("_heartbeat", "_update_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    # -- requests, retried by the policy above
    def _send(self, kind, method, path, body, done):
        """One request in the worker, after the one in hand (a final update
        waits for a heartbeat in flight rather than racing it)."""
        if self._busy:
            if self._queued is not None and self._queued[0] == "update":
                merged = dict(self._queued[3])      # what waited goes with what replaces it
                merged.update(body)
                body = merged
            self._queued = (kind, method, path, body, done)
            return
        options = self.options
        clock = self.loop.clock
        deadline = clock() + {"start": options["api_creation_timeout"],
                              "final": options["api_final_update_timeout"]}.get(
                                  kind, options["api_error_timeout"])
        conflict_until = clock() + options["api_conflict_timeout"]
        self._busy = True

        def attempt():
            self.loop.run_in_worker(lambda: self.client.request(method, path, body), answered)

        def answered(answer, error):
            if error is not None and not isinstance(error, _HttpError):
                error = _HttpError(None, str(error))
            status = getattr(error, "status", "ok")
            retry = None
            if kind == "start" and status == 409:
                delay = options["api_conflict_retry_delay"]
                retry = delay if clock() + delay <= conflict_until else None
            elif status in (429, 502, 503, 504) or status is None:
                after = error.retry_after
                delay = options["api_retry_delay"] if after is None else after
                delay = min(API_RETRY_MAX, max(API_RETRY_MIN if after is not None else 0.0,
                                               delay))
                retry = delay if clock() + delay <= deadline else None
            if retry is not None:
                return self.loop.call_later(retry, attempt)
            self._busy = False
            if error is None:
                self._last_sent = clock()
            done(answer, error)
            if self._queued is not None and not self._busy:
                queued, self._queued = self._queued, None
                self._send(*queued)
        attempt()


def _notify_failure(options, summary):
    """The failure webhook (--failure-webhook: the summary as JSON) and
    Rollbar's item API (--rollbar-access-token, SPECS.md 10.5), each once
    (in the worker); what could not be sent, as messages."""
    import json
    import urllib.request
    posts = []
    if options.get("failure_webhook"):
        posts.append((options["failure_webhook"], summary, {}))
    if options.get("rollbar_access_token"):
        body = {"data": {
            "environment": options.get("deployment") or "unknown", "level": "error",
            "timestamp": int(time.time()), "platform": sys.platform, "language": "python",
            "context": "procwrap", "server": {"host": summary.get("hostname")},
            "body": {"message": dict(summary, body="%s: %s (exit code %s)" % (
                summary.get("task") or summary.get("command"), summary["status"],
                summary.get("exit_code")))}}}
        posts.append((options["rollbar_url"], body,
                      {"X-Rollbar-Access-Token": options["rollbar_access_token"]}))
    failures = []
    for url, body, headers in posts:
        headers = dict(headers, **{"Content-Type": "application/json"})
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=options.get("api_request_timeout")
                                        or HTTP_CLIENT_TIMEOUT):
                pass
        except Exception as error:          # a notification never changes the outcome
            failures.append("could not send the failure notification to %s: %s"
                            % (url.split("?")[0], getattr(error, "reason", error)))
    return failures


class StatusUpdater(object):
    """Tell the procwrap running this program how its work goes, as
    proc_wrapper's StatusUpdater does (and through the same datagrams, so
    either wrapper hears either client)::

        with procwrap.StatusUpdater() as updater:
            updater.send_update(expected_count=3, last_status_message="starting")
            updater.send_update(success_count=1, extra_props={"step": 1})

    The port comes from PROCWRAP_STATUS_UPDATE_PORT, or proc_wrapper's
    PROC_WRAPPER_STATUS_UPDATE_SOCKET_PORT when its listener is enabled;
    with neither, every call does nothing.  incremental_count_mode: counts
    given are added to running totals kept here, and the totals are sent.
    Nothing here raises into the application: a send that fails is dropped.
    """

    def __init__(self, incremental_count_mode=False, environ=None):
        env = os.environ if environ is None else environ
        port = env.get("PROCWRAP_STATUS_UPDATE_PORT")
        if not port and (env.get("PROC_WRAPPER_ENABLE_STATUS_UPDATE_LISTENER") or "").strip() \
                .upper() == "TRUE":
            port = env.get("PROC_WRAPPER_STATUS_UPDATE_SOCKET_PORT") or str(STATUS_UPDATE_PORT)
        self.port = int(port) if _is_digits((port or "").strip()) else None
        self.enabled = self.port is not None    #: False: every call is a no-op
        self.name = env.get("PROCWRAP_PROCESS")  #: a supervised process's own name
        self.incremental = incremental_count_mode
        self.totals = dict((key, 0) for key in STATUS_COUNT_KEYS)
        self._sock = None

    def send_update(self, success_count=None, error_count=None, skipped_count=None,
                    expected_count=None, last_status_message=None, extra_props=None):
        """Send what is given (counts, a message, extra properties)."""
        try:
            message = {}
            for key, value in zip(STATUS_COUNT_KEYS, (success_count, error_count,
                                                      skipped_count, expected_count)):
                if self.incremental and value:
                    self.totals[key] += value
                    message[key] = self.totals[key]
                elif not self.incremental and value is not None:
                    message[key] = value
            if last_status_message:
                message["last_status_message"] = str(last_status_message)
            if extra_props is not None:
                message["other_runtime_metadata"] = extra_props
            if message:
                self._send(message)
        except Exception:       # never into the application
            pass

    def _send(self, message):
        """One datagram, newline-terminated (proc_wrapper's framing)."""
        if not self.enabled:
            return
        import json
        import socket
        if self.name:
            message = dict(message, name=self.name)
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        self._sock.sendto((json.dumps(message) + "\n").encode("utf-8"),
                          ("127.0.0.1", self.port))

    def close(self):
        """Let go of the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _CallUpdater(StatusUpdater):
    """managed_call's updater: the same calls, merged into the call's status
    in this process (no socket)."""

    def __init__(self, deliver, incremental_count_mode=False):
        StatusUpdater.__init__(self, incremental_count_mode, environ={})
        self.enabled = True
        self.deliver = deliver          #: func(message), thread-safe

    def _send(self, message):
        self.deliver(message)


def _api_options(values, environ, need_task=True):
    """The reporting settings from `values` (options by their dest; None
    when not given), then procwrap's PROCWRAP_* twins and proc_wrapper's
    PROC_WRAPPER_* variables (procwrap's win), then the defaults.  Its
    `reporting` is False without an API key: nothing is reported (offline
    is the default)."""
    options = {}
    for dest, (default, parse, theirs) in _API_SETTINGS.items():
        value = values.get(dest)
        ours = () if dest in _PROC_WRAPPER_ONLY else ("PROCWRAP_" + dest.upper(),)
        if value is None:
            for name in ours + theirs:
                text = environ.get(name, "").strip()
                if text:
                    value = parse(text, name)
                    break
        options[dest] = default if value is None else value
    options["reporting"] = bool(options["api_key"]) and not options["offline_mode"]
    if options["reporting"] and need_task and not (
            options["task_name"] or options["task_uuid"] or options["task_execution_uuid"]):
        raise UsageError("--api-key: the API server needs to know the task; give --task-name, "
                         "--task-uuid or --task-execution-uuid")
    return options


def _env_bool(text, where):
    """proc_wrapper's booleans: 1 or TRUE (any case) are true, anything else false."""
    return text.strip().upper() in ("1", "TRUE", "YES")


def _env_seconds(text, where):
    """Seconds; proc_wrapper's negative values mean 'none'."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(BAD_VALUE_MSG % (where, "expected seconds", text))
    return None if value < 0 else value


def _env_limit(text, where):
    """A whole number; proc_wrapper's negative values mean -1, 'unlimited'."""
    value = _env_seconds(text, where)
    return -1 if value is None else int(value)


def _env_json_object(text, where):
    """A JSON object (proc_wrapper's AUTO_CREATE_TASK_PROPS)."""
    import json
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UsageError(BAD_VALUE_MSG % (where, "expected a JSON object", text))
    return value


def _env_text(text, where):
    return text


#: dest -> (default, parser of a variable's text, proc_wrapper's variables)
#: for the reporting settings: one table for the command line, the
#: environment and managed_call (SPECS.md 10.4 names proc_wrapper's).
_API_SETTINGS = {
    "api_key": (None, _env_text, ("PROC_WRAPPER_API_KEY",)),
    "api_base_url": ("https://api.cloudreactor.io", _env_text, ("PROC_WRAPPER_API_BASE_URL",)),
    "offline_mode": (False, _env_bool, ("PROC_WRAPPER_OFFLINE_MODE",)),
    "task_name": (None, _env_text, ("PROC_WRAPPER_TASK_NAME",)),
    "task_uuid": (None, _env_text, ("PROC_WRAPPER_TASK_UUID",)),
    "task_execution_uuid": (None, _env_text, ("PROC_WRAPPER_TASK_EXECUTION_UUID",)),
    "deployment": (None, _env_text, ("PROC_WRAPPER_DEPLOYMENT",)),
    "auto_create_task": (False, _env_bool, ("PROC_WRAPPER_AUTO_CREATE_TASK",)),
    "auto_create_task_props": (None, _env_json_object,
                               ("PROC_WRAPPER_AUTO_CREATE_TASK_PROPS",)),
    "api_heartbeat_interval": (300.0, _env_seconds,
                               ("PROC_WRAPPER_API_HEARTBEAT_INTERVAL_SECONDS",)),
    "api_request_timeout": (30.0, _env_seconds, ("PROC_WRAPPER_API_REQUEST_TIMEOUT_SECONDS",)),
    "api_error_timeout": (300.0, _env_seconds, ("PROC_WRAPPER_API_ERROR_TIMEOUT_SECONDS",)),
    "api_retry_delay": (120.0, _env_seconds, ("PROC_WRAPPER_API_RETRY_DELAY_SECONDS",)),
    "api_creation_timeout": (1800.0, _env_seconds,
                             ("PROC_WRAPPER_API_TASK_CREATION_ERROR_TIMEOUT_SECONDS",)),
    "api_conflict_timeout": (300.0, _env_seconds, (
        "PROC_WRAPPER_API_TASK_EXECUTION_CREATION_CONFLICT_TIMEOUT_SECONDS",)),
    "api_conflict_retry_delay": (120.0, _env_seconds, (
        "PROC_WRAPPER_API_TASK_EXECUTION_CREATION_CONFLICT_RETRY_DELAY_SECONDS",)),
    "api_final_update_timeout": (1800.0, _env_seconds,
                                 ("PROC_WRAPPER_API_FINAL_UPDATE_TIMEOUT_SECONDS",)),
    "api_log_lines": (25, lambda text, where: int(_env_seconds(text, where) or 0), (
        "PROC_WRAPPER_NUM_LOG_LINES_SENT_ON_FAILURE",)),
    "prevent_offline_execution": (False, _env_bool,
                                  ("PROC_WRAPPER_PREVENT_OFFLINE_EXECUTION",)),
    "send_hostname": (False, _env_bool, ("PROC_WRAPPER_SEND_HOSTNAME",)),
    "send_pid": (False, _env_bool, ("PROC_WRAPPER_SEND_PID",)),
    "status_update_interval": (None, _env_seconds,
                               ("PROC_WRAPPER_STATUS_UPDATE_INTERVAL_SECONDS",)),
    "status_updates": (False, _env_bool, ("PROC_WRAPPER_ENABLE_STATUS_UPDATE_LISTENER",)),
    "status_update_port": (STATUS_UPDATE_PORT, lambda text, where: int(
        _env_seconds(text, where) or STATUS_UPDATE_PORT),
        ("PROC_WRAPPER_STATUS_UPDATE_SOCKET_PORT",)),
    # Read only as proc_wrapper names them (a drop-in's deployments), or
    # given to managed_call: what the server is told of the task.
    "schedule": (None, _env_text, ("PROC_WRAPPER_SCHEDULE",)),
    "task_is_service": (None, _env_bool, ("PROC_WRAPPER_TASK_IS_SERVICE",)),
    "task_is_passive": (None, _env_bool, ("PROC_WRAPPER_TASK_IS_PASSIVE",)),
    "task_max_concurrency": (None, _env_limit, ("PROC_WRAPPER_TASK_MAX_CONCURRENCY",)),
    "max_conflicting_age": (None, _env_seconds, ("PROC_WRAPPER_MAX_CONFLICTING_AGE_SECONDS",)),
    "task_instance_metadata": (None, _env_json_object,
                               ("PROC_WRAPPER_TASK_INSTANCE_METADATA",)),
    "build_task_execution_uuid": (None, _env_text,
                                  ("PROC_WRAPPER_BUILD_TASK_EXECUTION_UUID",)),
    "deployment_task_execution_uuid": (None, _env_text,
                                       ("PROC_WRAPPER_DEPLOYMENT_TASK_EXECUTION_UUID",)),
    "failure_webhook": (None, _env_text, ()),
    "rollbar_access_token": (None, _env_text, ("PROC_WRAPPER_ROLLBAR_ACCESS_TOKEN",)),
    "rollbar_url": ("https://api.rollbar.com/api/1/item/", _env_text, ()),
}
#: The settings above that have no option (nor PROCWRAP_ twin).
_PROC_WRAPPER_ONLY = frozenset(("schedule", "task_is_service", "task_is_passive",
                                "task_max_concurrency", "max_conflicting_age",
                                "task_instance_metadata", "build_task_execution_uuid",
                                "deployment_task_execution_uuid"))
#: Variables of the reporting settings that hold credentials: never passed
#: to a child unless its pass list names them, never logged.
API_CREDENTIALS = ("PROCWRAP_API_KEY", "PROC_WRAPPER_API_KEY", "PROCWRAP_ROLLBAR_ACCESS_TOKEN",
                   "PROC_WRAPPER_ROLLBAR_ACCESS_TOKEN")


def managed_call(func, *args, **kwargs):
    """func(*args, **kwargs) run by wrap mode's rules, for a Python program::

        result = procwrap.managed_call(fetch_orders, "2026-12-01", retries=3, retry_delay=5,
                                       timeout=600, config={"db__to_resolve": "AWS_SM:prod/db"},
                                       task_name="orders-etl")

    procwrap's own keywords (the rest go to func):

    - config, config_locations, config_ttl: `config` is resolved with
      resolve_config(config, config_locations) and given to func as
      config=...; resolved again before an attempt once config_ttl seconds
      have passed.
    - retries, retry_delay, retry_backoff, retry_max_delay, retry_jitter:
      an attempt that raises (an Exception) is tried again after wrap mode's
      backoff; the last exception is raised.
    - timeout: seconds an attempt may take.  It runs in a thread of its own
      and is abandoned at the timeout (a thread cannot be killed: it runs on
      in the background, its result dropped), which counts as a failed
      attempt; TimeoutError when it was the last.  Work that must really be
      stopped belongs in a subprocess: run it with procwrap's wrap mode.
    - status_updater=True: func is also given status_updater=..., whose
      send_update() reports progress (counts, a message) as a child's
      StatusUpdater does.
    - api_key, api_base_url, task_name, task_uuid, deployment, and the rest
      of the reporting settings by their option names (api_heartbeat_interval,
      prevent_offline_execution, ...): reports the call to the API server as
      wrap mode reports a run; read from PROCWRAP_* and PROC_WRAPPER_*
      variables when not given (environ, os.environ by default).

    It installs no signal handler and changes no process-wide state: the
    reporting runs in a private loop driven from the calling thread while
    an attempt runs, and only when an API key or a timeout asks for it.
    """
    ours = dict((key, kwargs.pop(key)) for key in list(kwargs) if key in _CALL_KEYWORDS)
    environ = ours.get("environ")
    environ = os.environ if environ is None else environ
    api = _api_options(dict((k, ours.get(k)) for k in _API_SETTINGS), environ)
    api.update(embedded=True, timeout=ours.get("timeout"), retries=ours.get("retries", 0),
               retry_delay=ours.get("retry_delay", 1.0))
    call = _ManagedCall(func, args, kwargs, ours, api, environ)
    return call.run()


#: managed_call()'s own keywords (beside the reporting settings).
_CALL_KEYWORDS = frozenset(("config", "config_locations", "config_ttl", "retries", "retry_delay",
                            "retry_backoff", "retry_max_delay", "retry_jitter", "timeout",
                            "status_updater", "environ")) | frozenset(_API_SETTINGS)


class _ManagedCall(object):
    """One managed_call(): attempts, their backoff, the config and its TTL,
    and the report.  Offline and without a timeout, attempts run right in
    the calling thread; otherwise each runs in a thread while a private
    loop (no signal handlers) keeps time and talks to the API server."""
    loop = None
    reporter = None
    _timer = None           #: the running attempt's timeout

    def __init__(self, func, args, kwargs, ours, api, environ):
        self.func, self.args, self.kwargs = func, args, kwargs
        self.ours, self.api, self.environ = ours, api, environ
        self.retries = ours.get("retries") or 0
        self.timeout = ours.get("timeout")
        self.config = None
        self.resolved_at = None
        self.attempt = 0
        self.outcome = None             #: ("result", value) or ("error", exception)

    def _arguments(self, updater):
        """func's keywords for the next attempt: config (resolved again when stale)."""
        kwargs = dict(self.kwargs)
        ours = self.ours
        if ours.get("config") is not None:
            ttl = ours.get("config_ttl")
            if self.config is None or (ttl is not None and
                                       time.monotonic() - self.resolved_at >= ttl):
                self.config = resolve_config(ours["config"], ours.get("config_locations") or (),
                                             environ=self.environ)
                self.resolved_at = time.monotonic()
            kwargs["config"] = self.config
        if ours.get("status_updater"):
            kwargs["status_updater"] = updater
        return kwargs

    def _delay(self):
        ours = self.ours
        return _backoff_delay(self.attempt, ours.get("retry_delay", 1.0),
                              ours.get("retry_backoff", 2.0), ours.get("retry_max_delay", 60.0),
                              ours.get("retry_jitter", 0.0))

    def run(self):
        """The result of the last attempt, or its exception raised."""
        if not self.api["reporting"] and self.timeout is None:
            return self._run_inline()
        return self._run_looped()

    def _run_inline(self):
        """No report, no timeout: plain attempts in this thread."""
        updater = _CallUpdater(lambda message: None)
        while True:
            self.attempt += 1
            try:
                return self.func(*self.args, **self._arguments(updater))
            except Exception:
                if self.attempt > self.retries:
                    raise
            time.sleep(self._delay())

    def _run_looped(self):
        """Attempts in threads, timed and reported by a private loop."""
        loop = self.loop = _Loop()
        loop.on_error = lambda text: sys.stderr.write(text)
        log = _Log("none", quiet=True)
        try:
            if self.api["reporting"]:
                self.reporter = _ApiReporter(
                    loop, log, self.api, [getattr(self.func, "__qualname__", repr(self.func))],
                    pid=os.getpid() if self.api["send_pid"] else None)
                self.reporter.on_stopped = self._stopped
                self.reporter.start(self._started)
            else:
                self._started(None)
            try:
                loop.run()
            except KeyboardInterrupt:
                self._finish(API_ABORTED, 130, KeyboardInterrupt())
                loop.stopped = False
                loop.run()
                raise
        finally:
            loop.close()
        kind, value = self.outcome
        if kind == "error":
            raise value
        return value

    def _started(self, refused):
        if refused is not None:
            return self._finish(API_ABORTED, refused, UnavailableError(
                "managed_call: the API server would not have this call run (exit status %d)"
                % refused))
        self._attempt()

    def _attempt(self):
        """One attempt in a thread; its end (or the timeout) comes to the loop."""
        import threading
        self.attempt += 1
        number = self.attempt
        updater = _CallUpdater(lambda message: self.loop.call_soon_threadsafe(
            self._status, message))
        try:
            kwargs = self._arguments(updater)
        except ProcwrapError as error:
            return self._ended(number, "error", error)

        def work():
            try:
                value = self.func(*self.args, **kwargs)
            except Exception as error:
                return self.loop.call_soon_threadsafe(self._ended, number, "error", error)
            self.loop.call_soon_threadsafe(self._ended, number, "result", value)
        threading.Thread(target=work, daemon=True, name="procwrap-managed-call").start()
        if self.timeout is not None:
            late = TimeoutError("managed_call: %s did not return within %s s; abandoned" % (
                getattr(self.func, "__qualname__", "the function"), _format_seconds(self.timeout)))
            self._timer = self.loop.call_later(self.timeout, self._ended, number, "timeout", late)

    def _status(self, message):
        if self.reporter is not None:
            self.reporter.status_update(message)

    def _ended(self, number, kind, value):
        """An attempt ended (a late end of an abandoned one is ignored)."""
        if number != self.attempt or self.outcome is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if kind == "result":
            return self._finish(API_SUCCEEDED, 0, None, value)
        if self.attempt <= self.retries:
            if self.reporter is not None:
                self.reporter.attempt_failed(kind == "timeout")
            self.loop.call_later(self._delay(), self._attempt)
            return
        self._finish(API_TIMED_OUT if kind == "timeout" else API_FAILED,
                     EX_TIMEOUT if kind == "timeout" else 1, value)

    def _stopped(self, reason):
        """The server stopped this execution: the attempt is abandoned."""
        self._finish(API_ABORTED, EX_TEMPFAIL, UnavailableError("managed_call: " + reason))

    def _finish(self, status, exit_code, error, value=None):
        if self.outcome is not None:
            return
        self.outcome = ("error", error) if error is not None else ("result", value)
        tail = None
        if error is not None:
            import traceback
            tail = "".join(traceback.format_exception_only(type(error), error)).strip()
        if self.reporter is None:
            self.loop.stopped = True
            return
        self.reporter.finish(status, exit_code, tail, lambda: setattr(self.loop, "stopped", True))


# =============================================================================
# Remote client
# procwrap on other hosts: one ssh process per link, a short loader as its
# remote command, Part I of this file sent as the payload, and a child on
# the far end that the local Process state machine drives like a local one.
# =============================================================================

#: Seconds of silence on a link after which it is taken for dead (both ends
#: ping at a third of it): a cut cable sends no EOF, and ssh's own
#: ServerAlive notices only after 45 s or more.
REMOTE_KEEPALIVE = 6.0
#: Seconds a link may take from ssh's start to the agent's first word (a
#: handshake, a login, a slow rc file say nothing for a while; the keepalive
#: applies once the agent runs and pings).
REMOTE_CONNECT = 30.0
#: Seconds to wait for ssh to end after the remote command has, before it is
#: killed (its work is done; only its teardown is left).
REMOTE_LINGER = 2.0
#: The remote command's first stage, run by `python3 -I -S -c LOADER` (no site:
#: 10 ms less; a call imports it when it first needs it): checks the
#: version, prints the marker with the nonce, reads exactly N bytes (select
#: first: sudo may hand it a non-blocking stdin), and runs them from memory.
_STAGE1 = """import os,sys,select,zlib
if sys.version_info<(3,6):
 sys.stderr.write('procwrap: remote Python %%d.%%d is too old; procwrap needs 3.6+\\n'
  %%sys.version_info[:2]);sys.exit(126)
n=int(sys.argv[2]);b=b''
os.write(1,('PROCWRAP:%%s\\n'%%sys.argv[3]).encode())
while len(b)<n:
 select.select([0],[],[])
 c=os.read(0,n-len(b))
 if not c:sys.exit(255)
 b+=c
g={'__name__':'__procwrap_agent__'}
exec(compile(zlib.decompress(b).decode(),'procwrap.py','exec'),g)
g['_agent_main'](%r)
"""
#: Run by the remote login shell: nothing in it means anything to sh, bash,
#: dash, zsh or fish (SPECS.md 11.3): the stage is in base64, in argv.
_LOADER = "import base64,zlib,sys;exec(zlib.decompress(base64.b64decode(sys.argv[1])))"


class _LinkError(_SpawnError):
    """A remote command that could not be started: the host, why, and the status."""

    def __init__(self, message, status):
        _SpawnError.__init__(self, "link", 0)
        self.message = message          #: one line, naming the host
        self.status = status            #: 255 (ssh), 127 (no Python), 126 (Python too old)


class _Remote(object):
    """Where and how to reach one host: [user@]host[:port], ssh options, the
    remote Python, the keepalive; and the payload, made once."""
    _payload = None

    def __init__(self, address, options=(), python="python3", keepalive=REMOTE_KEEPALIVE,
                 sudo=None, via=(), sudo_password=None):
        self.address = address          #: as the user wrote it
        self.sudo = sudo                #: run the agent as this user, through `sudo -n`
        #: its password, given to sudo's prompt (never in argv): sudo -S then
        self.sudo_password = sudo_password
        self.via = list(via)            #: bastions to jump through, in order
        self.destination, self.port = _ssh_address(address)
        self.host = self.destination.rpartition("@")[2]     #: the name to show (`host`)
        self.options = list(options)    #: -o OPTION for ssh
        self.python = python            #: the remote interpreter
        self.keepalive = keepalive

    def key(self):
        """What makes two remotes one link."""
        return (self.address, tuple(self.options), self.python, self.keepalive, self.sudo,
                tuple(self.via))

    def ssh_argv(self, payload_size, nonce):
        """ssh's argv: no tty (a binary-clean stream), no escape character, no
        prompt (BatchMode), quiet; then the user's options, so theirs win over
        nothing of ours that matters; then the loader."""
        import base64
        stage1 = base64.b64encode(_zlib_compress((_STAGE1 % self.keepalive).encode())).decode()
        argv = self._ssh()
        if self.via:
            argv += ["-o", "ProxyCommand=" + self._proxy()]
        if self.port:
            argv += ["-p", self.port]
        # sudo -n never prompts: a password it needs is an error (exit 1)
        # with its own message, said back to the user.  With a password,
        # sudo -S prompts on stderr with the nonce (no %: -p expands it) and
        # reads the password from stdin, where _Link writes it (SPECS.md 11.6).
        sudo = "sudo -n -u %s -- " % self.sudo if self.sudo else ""
        if self.sudo and self.sudo_password is not None:
            sudo = "sudo -S -p %s -u %s -- " % (_sudo_prompt(nonce), self.sudo)
        return argv + [self.destination, "cd / && exec %s%s -I -S -c '%s' %s %d %s"
                       % (sudo, self.python, _LOADER, stage1, payload_size, nonce)]

    def _ssh(self):
        """ssh with procwrap's options, then the user's."""
        argv = ["ssh", "-T", "-e", "none", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
        for option in self.options:
            argv += ["-o", option]
        return argv

    def _proxy(self):
        """A ProxyCommand through the --via hops.  Not ProxyJump: options given
        on ssh's command line do not reach the hops (SPECS.md 11.5), and ours
        and the user's must.  Each hop's ssh reaches the next through the one
        before; its %h:%p are escaped once more per level, as each ssh
        expands the tokens of the ProxyCommand it runs."""
        import shlex
        proxy = None
        for hop in self.via:
            destination, port = _ssh_address(hop)
            argv = self._ssh()
            if proxy is not None:
                argv += ["-o", "ProxyCommand=" + proxy.replace("%", "%%")]
            argv += (["-p", port] if port else []) + ["-W", "%h:%p", destination]
            proxy = " ".join(shlex.quote(arg) for arg in argv)
        return proxy

    def payload(self):
        """Part I of procwrap's source, compressed: what the agent runs."""
        if _Remote._payload is None:
            _Remote._payload = _zlib_compress(_part_one().encode("utf-8"))
        return _Remote._payload


def _sudo_prompt(nonce):
    """The prompt sudo -S is given: found in ssh's stderr, it asks for the password."""
    return "procwrap-sudo-%s:" % nonce


def _ssh_address(address):
    """([user@]host, port or None) of [user@]host[:port]."""
    user, at, rest = address.rpartition("@")
    if rest.count(":") == 1:
        host, _, port = rest.partition(":")
        return user + at + host, port
    return address, None


def _zlib_compress(data):
    """zlib at level 6: 1% bigger than 9 for Part I, and 20 ms less at each
    start (SPECS.md 11.10: 9 ms against 30 ms for 229 KB)."""
    import zlib
    return zlib.compress(data, 6)


def _part_one():
    """Part I of this module's source (up to the Part II banner).  After a
    script-mode re-exec the module has no file of its own: the script's path
    is in sys.argv[0] then."""
    source = ""
    for path in (globals().get("__file__"), sys.argv[0] if sys.argv else None):
        try:            # read directly: inspect.getsource costs 8 ms of imports
            with open(path, encoding="utf-8") as stream:
                source = stream.read()
        except (OSError, ValueError, TypeError):
            continue
        if source.startswith('#!/usr/bin/env python3\n"""procwrap:'):
            break
    else:
        raise UsageError("remote: procwrap's source is not in a file here; run "
                         "python3 procwrap.py remote ..., or procwrap install")
    return source.split("\n# " + "#" * 77 + "\n# Part II", 1)[0] + "\n"


class _Link(object):
    """One ssh process running procwrap's agent on a host, and the channel
    over its stdin and stdout.  on_ready(info) once the agent runs; then
    on_output(kind, data) and on_control(message) (parsed; pings are taken
    here); on_lost(error) once, when it ends: error is a _LinkError, or None
    when it ended after close() (the remote command was done)."""
    ready = False           #: the agent said `ready`
    booted = False          #: the payload is on its way: messages may follow it
    closing = False
    silent = False          #: it was taken for dead after --keepalive of silence
    on_booted = None        #: func() when booted

    def __init__(self, loop, remote, on_ready, on_output, on_control, on_lost):
        import binascii
        self.loop, self.remote = loop, remote
        self.on_ready, self.on_output = on_ready, on_output
        self.on_control, self.on_lost = on_control, on_lost
        nonce = binascii.hexlify(os.urandom(12)).decode("ascii")
        payload = remote.payload()
        argv = remote.ssh_argv(len(payload), nonce)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid, report = _spawn(argv, os.environ, None, None, in_r, out_w, err_w,
                                      reset=loop.handled_signals())
        except (OSError, _SpawnError) as error:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            raise _LinkError("%s: cannot start ssh: %s" % (remote.host, getattr(
                error, "strerror", None) or os.strerror(getattr(error, "errno", 0) or 0)), 255)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.report = report            #: ssh's exec report (read once ssh has exited)
        self.errors = _Tail()
        self._errors = _Pipe(loop, err_r, self, None)
        self._prompt = _sudo_prompt(nonce).encode("ascii") if remote.sudo_password else None
        self._prompts = 0               #: sudo prompts seen
        self._carry = b""               #: the end of the last read, for a split prompt
        self.channel = _Channel(loop, out_r, in_w, self._on_frame, self._on_closed,
                                ("PROCWRAP:%s\n" % nonce).encode("ascii"), payload)
        self.channel.on_marker = self._on_marker
        loop.watch_child(self.pid, self._on_ssh_exit)
        self._timer = loop.call_later(remote.keepalive / 3.0, self._tick)
        self._ssh_status = None

    def _on_marker(self):
        """The remote stage is there and the payload goes: what is sent now
        waits in its stdin for the agent (no round trip for `ready`)."""
        self.booted = True
        if self.on_booted is not None:
            self.on_booted()

    def raw(self, data):
        """ssh's stderr: kept for messages; sudo's prompt is answered (once:
        a second prompt means the password was wrong, and ssh goes)."""
        if not self._prompt:
            return self.errors.raw(data)
        window = self._carry + data     # a prompt split across two reads is found
        self._carry = window[1 - len(self._prompt):]
        self.errors.raw(data.replace(self._prompt, b""))
        if self._prompt in window:
            self._prompts += 1
            if self._prompts > 1:
                return self.kill()
            self.channel.queue(self.remote.sudo_password.encode("utf-8") + b"\n")

    def _tick(self):
        """Ping; a link silent past the keepalive is dead: ssh goes."""
        self._timer = None
        if self._ssh_status is not None:
            return
        limit = self.remote.keepalive if self.ready else max(REMOTE_CONNECT,
                                                             self.remote.keepalive)
        if self.loop.clock() - self.channel.received > limit:
            self.silent = True
            return self.kill()
        if self.ready:
            self.channel.control({"op": "ping"})
        self._timer = self.loop.call_later(self.remote.keepalive / 3.0, self._tick)

    def _on_frame(self, kind, payload):
        """A frame: output, or a control message (`ready` first)."""
        if kind != FRAME_CONTROL:
            return self.on_output(kind, payload)
        import json
        message = json.loads(payload.decode("utf-8"))
        op = message.get("op")
        if op == "ready" and not self.ready:
            self.ready = True
            self.on_ready(message)
        elif op != "ping":          # a ping only says the link lives (received)
            self.on_control(message)

    def control(self, message):
        """Send a control message (once ready)."""
        self.channel.control(message)

    def close(self):
        """The remote command is done: EOF to the agent, which then exits."""
        self.closing = True
        if not self.channel.closed:
            self.channel.closing = True
            self.channel._settle()
        self.loop.call_later(REMOTE_LINGER, self.kill)

    def kill(self):
        """End ssh now (its group: a ProxyJump ssh is its child)."""
        if self._ssh_status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _on_closed(self):
        """The channel is gone (EOF from ssh, or closed by us): ssh follows."""
        if self._ssh_status is None and not self.closing:
            self.loop.call_later(REMOTE_LINGER, self.kill)

    def _on_ssh_exit(self, wait_status):
        """ssh has ended: the link with it.  Why, if it was not asked to."""
        self._ssh_status = _exit_status(wait_status)
        if self._timer is not None:
            self._timer.cancel()
        self._errors.drain()
        self.channel.close()
        outcome = _read_exec_report(self.report)    # complete: ssh has exited
        os.close(self.report)
        if outcome:                 # ssh itself could not be run here
            return self.on_lost(_LinkError("%s: cannot run ssh: %s; install openssh-client, "
                                           "or put ssh on PATH" % (self.remote.host, os.strerror(
                                               outcome.errno or errno.ENOENT)),
                                           outcome.status))
        self.on_lost(None if self.closing else self._error())

    def _error(self):
        """The _LinkError for an ssh that ended on its own."""
        host, status = self.remote.host, self._ssh_status
        said = self.errors.last_line()
        if self.silent and not self.ready:
            return _LinkError("%s: no answer from the agent within %s s of ssh's start%s"
                              % (host, _format_seconds(max(REMOTE_CONNECT,
                                                           self.remote.keepalive)),
                                 ": " + said if said else ""), 255)
        if self.silent:
            return _LinkError("%s: the link was silent for %s s; taken for dead"
                              % (host, _format_seconds(self.remote.keepalive)), 255)
        if self.ready:
            return _LinkError("%s: the link was lost%s" % (host, ": " + said if said else ""),
                              255)
        sudo = self.remote.sudo
        if self._prompts > 1 or self._prompts and "incorrect password" in self.errors.text():
            return _LinkError("%s: sudo refused the password given for %s; check the "
                              "variable --sudo-password-env names" % (host, sudo), 126)
        if status == 127 or sudo and "command not found" in said:
            return _LinkError("%s: %s not found on the remote host%s; install Python 3.6+ or "
                              "give --python PATH" % (host, self.remote.python, " (for %s)"
                                                      % sudo if sudo else ""), 127)
        if sudo and "password is required" in said:
            return _LinkError("%s: sudo needs a password to run as %s; give it with "
                              "--sudo-password-env VAR, or let %s run the Python without one "
                              "(NOPASSWD in sudoers)" % (host, sudo, self.remote.destination),
                              126)
        first = self.errors.first_line("sudo:")
        if sudo and first:
            return _LinkError("%s: %s" % (host, first), 126)   # its first word says why
        if "Unknown option: -I" in self.errors.text():
            return _LinkError("%s: %s is Python 2; procwrap needs Python 3.6+ (give --python "
                              "PATH)" % (host, self.remote.python), 126)
        if status == 126 and said:
            return _LinkError("%s: %s" % (host, said.replace("procwrap: ", "")), 126)
        return _LinkError("%s: ssh: %s" % (host, said or "exited with status %d" % status),
                          255)


class _Host(object):
    """One link to a host, shared by the children, short commands and calls
    on it: each gets an id (open), its messages carry it, and its output
    frames are tagged with it.  A message sent before the payload waits for
    it, then follows it (the agent reads it once it runs).  The link closes
    when the last user is released (unless `keep`), and a new one is made
    when a user comes after that; a lost link is each user's on_lost(error).
    A user has on_output(kind, data), on_control(message) and on_lost(error)."""
    link = None
    keep = False            #: keep the link with no user (a Python API context)
    on_idle = None          #: func() when no link is left and no user
    on_ready = None         #: func(info) each time an agent is ready

    def __init__(self, loop, remote):
        import itertools
        self.loop, self.remote = loop, remote
        self.users = {}                 #: id -> user
        self.queued = []                #: messages waiting for the agent
        self._ids = itertools.count(1)
        self.info = None                #: the agent's `ready` message (its pid, Python)

    @property
    def ready(self):
        """Can messages go now (they follow the payload in the agent's stdin)?"""
        return self.link is not None and self.link.booted and not self.link.closing

    def open(self, user):
        """Register a user; its id.  Connects when no link is open (raises _LinkError)."""
        ident = next(self._ids)
        if self.link is None or self.link.closing:
            self.queued = []
            link = None

            def lost(error):
                self._on_lost(link, error)
            link = _Link(self.loop, self.remote, self._on_ready, self._on_output,
                         self._on_control, lost)
            link.on_booted = self._flush
            self.link = link
        self.users[ident] = user
        return ident

    def send(self, message):
        """Send a control message now, or once the agent is ready."""
        if self.ready:
            self.link.control(message)
        else:
            self.queued.append(message)

    def release(self, ident):
        """A user is done; the last one closes the link."""
        self.users.pop(ident, None)
        self.queued = [m for m in self.queued if m.get("id") != ident]
        if not self.users and not self.keep and self.link is not None:
            if self.link.ready:
                self.link.close()
            else:
                self.link.kill()        # still connecting: nothing to wait for

    def _flush(self):
        queued, self.queued = self.queued, []
        for message in queued:
            self.link.control(message)

    def _on_ready(self, info):
        self.info = info
        if self.on_ready is not None:
            self.on_ready(info)

    def _on_output(self, kind, payload):
        user = self.users.get(int.from_bytes(payload[:4], "big"))
        if user is not None:
            user.on_output(kind, payload[4:])

    def _on_control(self, message):
        if message.get("op") == "import":
            return self.link.control(_module_answer(message.get("name")))
        user = self.users.get(message.get("id"))
        if user is not None:
            user.on_control(message)

    def _on_lost(self, link, error):
        """A link ended: its users' runs with it (a link closed by release()
        had none left).  Each user is told once."""
        if link is not self.link:
            return                      # an old link, closed while a new one opened
        self.link = None
        users, self.users = self.users, {}
        self.queued = []
        for user in users.values():
            user.on_lost(error or _LinkError("%s: the link was closed" % self.remote.host, 255))
        if self.link is None and not self.users and self.on_idle is not None:
            self.on_idle()


def _remote_env(env):
    """What a remote command gets on top of the agent's environment: the
    variables procwrap set or resolved (secrets travel in the channel),
    not this machine's PATH or HOME."""
    return dict((k, v) for k, v in env.items() if os.environ.get(k) != v)


def _module_answer(name):
    """The local side's answer to an agent's import: the source this
    interpreter would import for `name` (pure Python only), or none.  The
    calling script is served as __procwrap_main__."""
    answer = {"op": "module", "name": name, "source": None, "file": None, "package": False}
    try:
        if name == "__procwrap_main__":
            path = getattr(sys.modules.get("__main__"), "__file__", None)
            if path:
                with open(path, encoding="utf-8") as stream:
                    answer.update(source=stream.read(), file=path)
            return answer
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None:
            return answer
        source = getattr(spec.loader, "get_source", lambda name: None)(name)
        if source is None and (spec.origin or "").endswith(".py"):
            with open(spec.origin, encoding="utf-8") as stream:     # a pytest-like loader
                source = stream.read()
    except (ImportError, ValueError, AttributeError, OSError, SyntaxError):
        return answer
    if source is not None:
        answer.update(source=source, file=spec.origin,
                      package=spec.submodule_search_locations is not None)
    return answer


class _RemoteChild(object):
    """A Process's command on another host, behind the child interface that
    _LocalChild has: spawn(), signal(), then on_exec and on_exit once each.
    It is one user of its host's shared link; its output arrives in tagged
    frames and is split into lines here."""
    pid = None
    last_pid = None
    pgid = None
    ident = None            #: its id on the link, while it runs

    def __init__(self, host, loop, on_exec, on_exit, sinks=None, max_line=MAX_LINE_BYTES):
        self.host = host                #: the _Host it runs on
        self.loop = loop
        self.on_exec = on_exec
        self.on_exit = on_exit
        self.sinks = sinks
        self.max_line = max_line
        self._pipes = ()

    def spawn(self, argv, env, workdir=None, user=None, tty=False):
        """Ask for it (the link opens if need be); on_exec follows."""
        if self.sinks is not None:
            self._pipes = tuple(_Pipe(self.loop, -1, sink, self.max_line)
                                for sink in self.sinks if sink is not None)
        self.ident = self.host.open(self)
        self.host.send({"op": "spawn", "id": self.ident, "argv": list(argv),
                        "env": _remote_env(env), "workdir": workdir,
                        "user": user.name if user else None,
                        "merge": self.sinks is not None and self.sinks[1] is None})
        return True

    def on_output(self, kind, data):
        """A chunk of the command's stdout or stderr."""
        if kind - FRAME_STDOUT in range(len(self._pipes)):    # merged: stdout only
            self._pipes[kind - FRAME_STDOUT].feed(data)

    def on_control(self, message):
        """The agent's word on the command: it runs (or why not), it ended."""
        if message.get("op") == "exec":
            self.pid = message.get("pid")
            error = None
            if message.get("message"):
                error = _LinkError("%s: %s" % (self.host.remote.host, message["message"]),
                                   EX_NOEXEC)
            elif message.get("stage"):
                error = _SpawnError(message["stage"], message.get("errno") or 0)
            self.on_exec(error)
        elif message.get("op") == "exit":
            self.host.release(self.ident)
            self._ended(message["status"])

    def on_lost(self, error):
        """The link ended while it ran: a failed run (status 255), said
        through on_exec(error) first (the Process logs it)."""
        self.on_exec(error)
        self._ended(error.status << 8)

    def _ended(self, wait_status):
        for pipe in self._pipes:
            pipe.flush()
        self._pipes = ()
        self.ident = None
        self.last_pid, self.pid = self.pid, None
        self.on_exit(wait_status)

    def signal(self, signum, group=True):
        """Send signum to the command's group (or it alone) on the far end.
        A SIGKILL before the agent is there gives the run up."""
        if self.ident is None:
            return
        if self.host.ready:
            self.host.send({"op": "signal", "id": self.ident, "signum": signum, "group": group})
        elif signum == signal.SIGKILL:
            self.host.release(self.ident)
            self._ended(signal.SIGKILL)

    def end_group(self):
        """The agent ended what was left of the group already."""

    def adopt(self, pid_files):
        """No floating pid across hosts."""
        return False

    def run_command(self, argv, env, workdir, user, on_done):
        """A short command on the same host (an exec probe): a _RemoteCommand."""
        return _RemoteCommand(self.host, argv, env, workdir, user, on_done)


class _RemoteCommand(object):
    """A short command on a host (an exec probe), as _LocalCommand is here:
    on_done(wait_status, output) once; cancel() kills its group.  A lost
    link is status 255, with the reason as its output."""

    def __init__(self, host, argv, env, workdir, user, on_done):
        self.host = host
        self.on_done = on_done
        self.ident = host.open(self)
        host.send({"op": "command", "id": self.ident, "argv": list(argv),
                   "env": _remote_env(env),
                   "workdir": workdir, "user": user.name if user else None})

    def on_output(self, kind, data):
        """None comes: the output is in `done`."""

    def on_control(self, message):
        """Its end."""
        if message.get("op") == "done":
            self.host.release(self.ident)
            self.on_done(message["status"], message.get("output", "").encode("utf-8"))

    def on_lost(self, error):
        """The link went: status 255."""
        self.on_done(error.status << 8, error.message.encode("utf-8"))

    def cancel(self):
        """Kill its group (its probe timed out); `done` still follows, as the
        reaping of a local one does."""
        if self.host.users.get(self.ident) is self:
            self.host.send({"op": "cancel", "id": self.ident})


class _RemoteRun(_Owner):
    """`procwrap remote`: one Process per host, each a _RemoteChild on its
    host's link, at most `parallel` starting at once; signals go to every
    command.  Exit status: one host's, or the highest of several (a summary
    on stderr).  The run ends once every command has and its link is closed."""

    def __init__(self, specs, remotes, log, max_line=MAX_LINE_BYTES, parallel=16,
                 kill_on_second_signal=False, signal_map=None):
        _Owner.__init__(self, log, None, signal_map, kill_on_second_signal, max_line)
        self.parallel = parallel
        self.processes = []
        self.hosts = []
        for spec, remote in zip(specs, remotes):
            host = _Host(self.loop, remote)
            host.on_idle = self._maybe_over
            self.hosts.append(host)

            def child(loop, on_exec, on_exit, sinks, line, host=host):
                return _RemoteChild(host, loop, on_exec, on_exit, sinks, line)
            self.processes.append(_Process(spec, self.loop, log, self.on_change, max_line,
                                           child_class=child))
        log.redact.make_public(p.name for p in self.processes)
        self._waiting = list(self.processes)
        self._began = {}                #: name -> time.time() it first started
        self._took = {}                 #: name -> seconds from start to its end
        self._unstarted = {}            #: name -> status of a host a signal kept from starting

    def begin(self):
        """Start the first `parallel` hosts."""
        self._start_more()

    def _start_more(self):
        """Start waiting hosts while fewer than `parallel` run."""
        running = sum(1 for p in self.processes if p.name in self._began
                      and p.name not in self._took)
        while self._waiting and running < self.parallel:
            process = self._waiting.pop(0)
            self._began[process.name] = time.time()
            running += 1
            process.start()

    def on_change(self, process, old):
        """A host's command ended for good: start the next; end when all have."""
        if process.state in _State.DONE or process.state == _State.STOPPED:
            self._took.setdefault(process.name, time.time() - self._began[process.name])
            self._start_more()
            self._maybe_over()
        elif process.state == _State.BACKOFF:
            _log_retry(self.log, process, named=True)

    def _maybe_over(self):
        """Every command has ended and every link is closed: the run is over."""
        if len(self._took) == len(self.processes) and all(h.link is None for h in self.hosts):
            self.loop.stopped = True

    def result(self):
        """One host: its status; several: the highest, and a line per host."""
        statuses = [self._unstarted.get(p.name, p.status) for p in self.processes]
        statuses = [EX_SOFTWARE if status is None else status for status in statuses]
        if self.exit_status is not None:
            return self.exit_status
        if len(self.processes) > 1:
            for process, status in zip(self.processes, statuses):
                _stderr("%s: status %d (%s s)" % (process.name, status, _format_seconds(
                    round(self._took.get(process.name, 0.0), 1))))
        return max(statuses) if statuses else EX_OK

    def on_signal(self, signum):
        """Each host's command as wrap mode's (_wrapped_signal); a stop signal
        also keeps the hosts not started yet from starting."""
        signum = self.router.route(signum)
        if signum is None:
            return
        name = _signal_name(signum)
        for process in self.processes:
            if process.name in self._began and process.state not in _State.DONE:
                _wrapped_signal(process, signum, self.kill_on_second_signal)
        if name in STOP_SIGNALS:
            self._start_none(128 + signum)
        elif name in JOB_CONTROL_SIGNALS:
            os.kill(os.getpid(), signal.SIGSTOP)

    def _start_none(self, status):
        """The hosts not started yet will not be: `status` is theirs."""
        for process in self._waiting:
            self._unstarted[process.name] = status
            self._took[process.name] = 0.0
        del self._waiting[:]
        self._maybe_over()

    def shutdown(self, reason, status=None):
        """Stop every command for good (as _Wrapper.shutdown); exit with `status`."""
        self.log.event(SHUTDOWN_MSG % reason, "warning", event="shutdown")
        self.exit_status = status
        for process in self.processes:
            process.last_attempt()
            if process.state in (_State.STARTING, _State.RUNNING, _State.BACKOFF):
                process.stop()
        self._start_none(status if status is not None else EX_SOFTWARE)

    def end(self):
        """No ssh left behind."""
        _sweep_children(self.loop)


# -- the Python API: connect(host).run() and .call()

def connect(host, via=None, sudo=None, python=None, ssh_options=(),
            keepalive=REMOTE_KEEPALIVE, timeout=60, sudo_password=None):
    """Start procwrap's agent on `host` ([user@]host[:port]) over ssh and
    return a context for run() and call(), as `procwrap remote` would
    (`via`: a bastion or a list of them; `sudo`: a user to run as through
    sudo -n, or sudo -S answering its prompt with `sudo_password`;
    `python`: the remote interpreter, python3 by default;
    `ssh_options`: -o options for ssh, which is found on PATH).  Waits up
    to `timeout` seconds for the agent.  Use it with `with`, or close() it:
    closing ends everything it started there.  Raises UnavailableError
    (with .status 255, 127 or 126, as the command line exits) when the host
    cannot be reached or has no usable Python."""
    if isinstance(via, str):
        via = [hop for hop in via.split(",") if hop]
    remote = _Remote(host, list(ssh_options), python or "python3", keepalive, sudo, via or (),
                     sudo_password)
    return _Context(remote, timeout)


class RemoteError(ProcwrapError):
    """A function run by call() raised: `type` is its exception's type name
    there ('ValueError', 'mymodule.Problem'), `message` its str(), and
    `remote_traceback` the traceback as the remote printed it."""

    def __init__(self, host, kind, message, remote_traceback):
        ProcwrapError.__init__(self, "%s: %s: %s" % (host, kind, message))
        self.host = host
        self.type = kind
        self.message = message
        self.remote_traceback = remote_traceback


class _Result(object):
    """What run() returns: `status` (wrap mode's rules: 128+N by signal N,
    124 when its timeout expired, 126/127 when it could not be run), and
    its `stdout` and `stderr` (bytes)."""
    __slots__ = ("status", "stdout", "stderr")

    def __init__(self, status, stdout, stderr):
        self.status, self.stdout, self.stderr = status, stdout, stderr

    def __repr__(self):
        return "Result(status=%d, stdout=%d bytes, stderr=%d bytes)" % (
            self.status, len(self.stdout), len(self.stderr))


class _Printed(object):
    """A sink for what a call printed there: each line on this process's
    own stdout or stderr, prefixed `host | ` as the command line does."""

    def __init__(self, host, name):
        self.prefix = (host + " | ").encode("utf-8")
        self.name = name                #: 'stdout' or 'stderr'

    def lines(self, data):
        """Complete lines."""
        stream = getattr(sys, self.name)
        text = b"".join(self.prefix + line + b"\n" for line in data.split(b"\n"))
        stream.write(text.decode("utf-8", "replace"))
        stream.flush()

    piece = lines


class _Waiter(object):
    """One run() or call() on a context: a user of its host, and what the
    caller's thread waits on (`done`)."""
    ident = None            #: its id on the link
    status = None           #: a run's wait status
    reply = None            #: a call's result or raised message
    error = None            #: the _LinkError that ended it

    def __init__(self, context, capture):
        import threading
        self.context = context
        self.done = threading.Event()
        self.capture = capture          #: keep the output (run) or print it (call)
        self.output = (bytearray(), bytearray())
        host = context.remote.host
        self._pipes = (_Pipe(None, -1, _Printed(host, "stdout"), MAX_LINE_BYTES),
                       _Pipe(None, -1, _Printed(host, "stderr"), MAX_LINE_BYTES))

    def on_output(self, kind, data):
        """Output from the remote: kept, or printed line by line."""
        if kind in (FRAME_STDOUT, FRAME_STDERR):
            if self.capture:
                self.output[kind - FRAME_STDOUT].extend(data)
            else:
                self._pipes[kind - FRAME_STDOUT].feed(data)

    def on_control(self, message):
        """Its end, or a log record of a call."""
        op = message.get("op")
        if op == "log":
            import logging
            logging.getLogger(message.get("name") or "root").log(
                message.get("level", logging.INFO), "%s", message.get("message", ""),
                extra={"host": self.context.remote.host})
        elif op == "exec" and message.get("message"):
            self.output[1].extend((message["message"] + "\n").encode("utf-8"))
        elif op in ("exit", "result", "raised"):
            self.status = message.get("status")
            self.reply = message
            self.context.host.release(self.ident)
            self._end()

    def on_lost(self, error):
        """The link went (or the context was closed) while it ran."""
        self.error = error
        self._end()

    def _end(self):
        for pipe in self._pipes:
            pipe.flush()
        self.done.set()


class _Context(object):
    """An open link to a host for a Python program (see connect()): its own
    loop in a daemon thread (so the link is kept alive by pings while the
    program does other things), run() and call() from any thread."""

    def __init__(self, remote, timeout):
        import threading
        self.remote = remote
        self.loop = _Loop()
        self.loop.wait_threads = True   # not the main thread: no SIGCHLD here
        self.host = _Host(self.loop, remote)
        self.host.keep = True
        self.host.on_idle = self._stop
        self.host.on_ready = lambda info: self._ready.set()
        self.lost = None                #: the _LinkError, once the link is gone
        self.closed = False
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True,
                                       name="procwrap-connect-%s" % remote.host)
        self.thread.start()
        self.loop.call_soon_threadsafe(self._open)
        if not self._ready.wait(timeout):
            self.close()
            raise UnavailableError("%s: the agent did not start within %s s" % (
                remote.host, _format_seconds(timeout)))
        if self.lost is not None:
            self.close()
            error = UnavailableError(self.lost.message)
            error.status = self.lost.status
            raise error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<procwrap connection to %s%s>" % (self.remote.address,
                                                  " (closed)" if self.closed else "")

    # -- in the loop's thread
    def _serve(self):
        try:
            self.loop.run()
        finally:
            if self.host.link is not None:
                self.host.link.kill()       # its waiter thread reaps it

    def _open(self):
        try:
            self.ident = self.host.open(self)
        except _LinkError as error:
            return self.on_lost(error)

    def on_output(self, kind, data):
        """Nothing is sent under the context's own id."""

    def on_control(self, message):
        """Nor said."""

    def on_lost(self, error):
        """The link is gone: every later use says so."""
        self.lost = error
        self._ready.set()
        self._stop()

    def _stop(self):
        if self.host.link is None:
            self.loop.stopped = True

    def _begin(self, waiter, message):
        """Register a run or call and send it."""
        if self.host.link is None:
            return waiter.on_lost(self.lost or _LinkError("%s: the link is closed"
                                                          % self.remote.host, 255))
        waiter.ident = self.host.open(waiter)
        message["id"] = waiter.ident
        self.host.send(message)

    def _signal(self, waiter, signum):
        if waiter.ident in self.host.users:
            self.host.send({"op": "signal", "id": waiter.ident, "signum": signum,
                            "group": True})

    def _close(self):
        self.host.keep = False
        if self.host.link is None:
            self.loop.stopped = True
        else:
            self.host.link.close()

    # -- from the caller's thread
    def _submit(self, waiter, message):
        if self.closed or self.lost is not None:
            raise UnavailableError("%s: %s" % (self.remote.host, "the connection is closed"
                                               if self.closed else self.lost.message))
        self.loop.call_soon_threadsafe(self._begin, waiter, message)

    def _raise_lost(self, waiter):
        error = UnavailableError(waiter.error.message)
        error.status = waiter.error.status
        raise error

    @property
    def python(self):
        """The remote interpreter's version, 'X.Y.Z'."""
        return (self.host.info or {}).get("python")

    def run(self, argv, timeout=None, env=None, workdir=None, user=None):
        """Run argv there (its own session; stdin /dev/null) and wait for it;
        a Result with .status, .stdout, .stderr.  `env` is added to the
        agent's environment; `user` (when the agent is root) runs it as
        that user.  Past `timeout` seconds its group gets SIGTERM, then
        SIGKILL after 5 s, and the status is 124."""
        if isinstance(argv, str):
            raise TypeError("run: argv is a list of strings (no shell): [%r]" % argv)
        waiter = _Waiter(self, capture=True)
        self._submit(waiter, {"op": "spawn", "argv": [str(arg) for arg in argv],
                              "env": dict(env or {}), "workdir": workdir, "user": user})
        timed_out = not waiter.done.wait(timeout)
        if timed_out:
            for signum in (signal.SIGTERM, signal.SIGKILL):
                self.loop.call_soon_threadsafe(self._signal, waiter, signum)
                if waiter.done.wait(AGENT_GRACE):
                    break
            waiter.done.wait(self.remote.keepalive)
        if waiter.error is not None:
            self._raise_lost(waiter)
        status = EX_TIMEOUT if timed_out else _exit_status(waiter.status)
        return _Result(status, bytes(waiter.output[0]), bytes(waiter.output[1]))

    def call(self, func, *args, **kwargs):
        """func(*args, **kwargs) run there; its result.  `func` is a module-
        level function of an importable module or of the calling script;
        modules the remote lacks come from here (pure Python source, kept
        in memory there).  Arguments and result are JSON values or bytes
        (tuples come back as lists).  What it prints comes out here as
        `host | line`; its logging records go to the logger of the same
        name here, with a `host` attribute.  An exception there raises
        RemoteError; past `timeout=` seconds TimeoutError (the call is
        abandoned: its thread there runs on, its result is dropped, and the
        context stays usable)."""
        timeout = kwargs.pop("timeout", None)
        module, name = _function_address(func)
        message = {"op": "call", "module": module, "name": name,
                   "args": _to_wire(list(args)), "kwargs": _to_wire(kwargs)}
        waiter = _Waiter(self, capture=False)
        self._submit(waiter, message)
        if not waiter.done.wait(timeout):
            self.loop.call_soon_threadsafe(self.host.release, waiter.ident)
            raise TimeoutError("%s: %s() did not return within %s s; abandoned" % (
                self.remote.host, name, _format_seconds(timeout)))
        if waiter.error is not None:
            self._raise_lost(waiter)
        reply = waiter.reply
        if reply["op"] == "raised":
            raise RemoteError(self.remote.host, reply["type"], reply["message"],
                              reply["traceback"])
        return _from_wire(reply["value"])

    def close(self):
        """End everything started there (the agent stops it: TERM, then KILL
        after 5 s) and the link; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._close)
            self.thread.join(REMOTE_LINGER + 5)
        if not self.thread.is_alive():
            self.loop.close()


def _function_address(func):
    """(module, qualified name) by which the agent finds `func`; TypeError
    for what it could not find (a lambda, a nested function, a method of
    an instance)."""
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None)
    if not module or not name or "<" in name or getattr(func, "__self__", None) is not None \
            and not isinstance(func.__self__, type(sys)):
        raise TypeError("call: %r is not a module-level function; define it at the top "
                        "level of a module or of the script" % (func,))
    return ("__procwrap_main__" if module == "__main__" else module), name


# =============================================================================
# Config
# Reading JSON/TOML/YAML, validating every field with its place, and turning
# entries into ProcessSpecs; every problem of a config is reported as a
# ConfigError with a line each.
# =============================================================================


class _ProcessSpec(object):
    """What to run and how to keep it running; built from a config entry or the CLI."""
    name = "main"                   #: unique; the `process` field of its records
    where = "command"               #: its place in the config, for messages
    argv = ()                       #: command and args after $(VAR) expansion
    env = None                      #: the child's whole environment (dict)
    workdir = None                  #: chdir before exec
    user = None                     #: a _User, or None to stay who we are
    stop_signal = signal.SIGTERM    #: sent to the group to ask it to stop
    stop_timeout = STOP_TIMEOUT     #: grace before SIGKILL to the group
    restart = "Always"              #: Always | OnFailure | Never
    success_codes = (0,)            #: statuses that are not failures
    backoff_initial = BACKOFF_INITIAL
    backoff_factor = BACKOFF_FACTOR
    backoff_max = BACKOFF_MAX
    backoff_reset = BACKOFF_RESET_AFTER  #: seconds up after which backoff restarts
    backoff_jitter = 0.0
    restart_limit = None            #: consecutive restarts before giving up
    timeout = None                  #: seconds an attempt may run
    essential = False               #: its end ends the run
    depends_on = ()                 #: names it waits for (and stops before, at shutdown)
    conditions = None               #: name -> DEPENDENCY_CONDITIONS entry it waits for
    depends_places = None           #: name -> its place in the config, for messages
    labels = None                   #: dict added to every log record
    capture = True                  #: pipes to the log, or inherit our fds
    keep_group = False              #: leave the group alone after the child exits
    single_child = False            #: signals to the child alone, not its group
    tty = False                     #: make our terminal its controlling tty
    make_env = None                 #: func() -> env with secrets resolved again
    secrets_ttl = None              #: seconds after which a restart calls make_env
    probes = ()                     #: ProbeSpecs (liveness, readiness, startup)
    post_start = None               #: lifecycle.postStart hook (a ProbeSpec), or None
    pre_stop = None                 #: lifecycle.preStop hook (a ProbeSpec), or None
    fingerprint = None              #: tells a changed entry on reload
    remote = None                   #: the _Remote it runs on (its `host`), or None: here
    status_updates = False          #: it sends status updates (statusUpdates)
    task_name = None                #: each run is reported to the API server as this task
    task_uuid = None                #: ... or this one, by UUID
    lock_name = None                #: it runs only while holding a slot of this lock
    lock_limit = 1                  #: the lock's slots (singleton: 1)
    finish = None                   #: a ProbeSpec (exec) run after each exit, with its status
    autostart = True                #: started with the others; False: stopped until ctl start
    start_seconds = None            #: a run shorter than this is a failed start (retried)
    priority = None                 #: start in ascending order, stop in descending
    merge_stderr = False            #: one pipe for stdout and stderr (their order kept)
    shell = None                    #: True: a string command runs through /bin/sh -c
    replica_of = None               #: the entry's name, for one of its `replicas`
    memory_limit = None             #: bytes its group's RSS may reach; over: stopped
    chroot = None                   #: the directory that is its / (root only)
    prom_target = None              #: its metrics URL, merged into GET /prommerge
    log_file = None                 #: its records go to this file too (logs.file)
    log_max_bytes = LOG_FILE_MAX_BYTES  #: ... rotated past this size (0: never)
    log_backups = LOG_FILE_BACKUPS  #: ... keeping this many rotated files
    log_format = None               #: its records' format (logs.format), or the run's
    log_level = None                #: "auto": each record's level found in its line
    stderr_level = None             #: the level of a stderr line that says none

    def __init__(self, **fields):
        for key, value in fields.items():
            if not hasattr(_ProcessSpec, key):
                raise TypeError("unknown ProcessSpec field %r" % key)
            setattr(self, key, value)


class _ProbeSpec(object):
    """A probe from a process's config, with Kubernetes' field meanings and defaults."""
    kind = "readiness"          #: liveness | readiness | startup
    handler = "exec"            #: a key of PROBE_HANDLERS
    options = None              #: the handler's own fields, checked (dict)
    initial_delay = 0.0         #: initialDelaySeconds, counted from the process's start
    period = 10.0               #: periodSeconds
    timeout = 1.0               #: timeoutSeconds; a check that takes longer fails
    success_threshold = 1       #: consecutive successes to pass (after failing)
    failure_threshold = 3       #: consecutive failures to fail

    def __init__(self, **fields):
        for key, value in fields.items():
            if not hasattr(_ProbeSpec, key):
                raise TypeError("unknown ProbeSpec field %r" % key)
            setattr(self, key, value)


#: Probe handler -> its fields.  exec, httpGet and tcpSocket are Kubernetes';
#: the rest are procwrap's own, for what containers need (see the README).
PROBE_HANDLERS = {
    "exec": ("command",),
    "httpGet": ("path", "port", "host", "scheme", "httpHeaders"),
    "tcpSocket": ("port", "host"),
    "file": ("path", "maxAgeSeconds"),
    "heartbeat": ("maxAgeSeconds",),
    "pidFile": ("path",),
    "notify": (),
    "env": ("name", "value"),
    "sql": ("driver", "dsn", "query", "expect"),
    "amqp": ("url",),
}
PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
_PROBE_FIELDS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
                 "failureThreshold")

_NAME_RE = _Pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME_RE = _Pattern(r"^[^=\x00]+$")
_INVALID = object()


class _Checker(object):
    """Validates a parsed config, collecting one message per problem."""

    def __init__(self):
        self.problems = []      #: 'where: what; fix' lines
        self.warnings = []      #: the same, for what runs but may surprise

    def fail(self, where, message):
        """Record one problem at `where`; returns _INVALID for the caller to pass on."""
        self.problems.append("%s: %s" % (where, message))
        return _INVALID

    def fields(self, value, where, known, required=()):
        """The dict at `where`, with unknown keys reported (with a did-you-mean)."""
        if not isinstance(value, dict):
            self.fail(where, "expected an object with fields %s, got %s"
                      % (", ".join(sorted(known)), _type_name(value)))
            return {}
        hinted = False
        for key in value:
            if key not in known:
                hint = _FIELD_HINTS.get(key) if isinstance(key, str) else None
                hinted = hinted or hint is not None
                self.fail("%s.%s" % (where, key), "unknown field" + (
                    "; " + hint if hint else _did_you_mean(str(key), known)
                    or "; known: " + ", ".join(sorted(known))))
        for key in required if not hinted else ():   # the hint says what to write
            if key not in value:
                self.fail("%s.%s" % (where, key), "required field is missing")
        return value

    def string(self, value, where):
        """A string that an argument, path or variable can hold (no NUL byte,
        no lone surrogate), or a problem."""
        if not isinstance(value, str):
            return self.fail(where, "expected a string, got %s" % _type_name(value))
        problem = _os_text_problem(value)
        return self.fail(where, problem) if problem else value

    def strings(self, value, where, split=False):
        """A list of strings; a single string too when `split` (split like a shell)."""
        if split and isinstance(value, str):
            import shlex
            if self.string(value, where) is _INVALID:
                return _INVALID
            try:
                return shlex.split(value)
            except ValueError as error:
                return self.fail(where, "cannot split %r: %s; close the quote or use a list"
                                 % (value, error))
        if not isinstance(value, list):
            return self.fail(where, "expected a list of strings, got %s" % _type_name(value))
        for index, item in enumerate(value):
            place = "%s[%d]" % (where, index)
            if not isinstance(item, str):
                return self.fail(place, "expected a string, got %s; quote it" % _type_name(item))
            if self.string(item, place) is _INVALID:
                return _INVALID
        return list(value)

    def boolean(self, value, where):
        """true or false (not 'yes', not 1), or a problem."""
        if not isinstance(value, bool):
            return self.fail(where, "expected true or false, got %r" % (value,))
        return value

    def value(self, parse, value, where, *args):
        """parse(value, *args): one of the value types, or a problem at `where`."""
        try:
            return parse(value, *args)
        except _BadValue as error:
            return self.fail(where, error.message(value))

    def seconds(self, value, where):
        """A duration in seconds (see _value_seconds), or a problem."""
        return self.value(_value_seconds, value, where)

    def number(self, value, where, minimum, integer=False, maximum=None):
        """A number from minimum to maximum (see _value_number), or a problem."""
        return self.value(_value_number, value, where, minimum, integer, maximum)

    def bytes(self, value, where):
        """A size (see _value_bytes), or a problem."""
        return self.value(_value_bytes, value, where)

    def codes(self, value, where):
        """Exit statuses (see _value_codes), or a problem."""
        return self.value(_value_codes, value, where)

    def warn(self, where, message):
        """Something that works but is likely not what was meant: said, not refused."""
        self.warnings.append("%s: %s" % (where, message))

    def port(self, value, where, listen=False):
        """A port (see _value_port), or a problem."""
        return self.value(_value_port, value, where, listen)

    def choice(self, value, where, choices):
        """One of `choices`, exactly, or a problem."""
        return self.value(_value_choice, value, where, choices)

    def signal(self, value, where):
        """A signal name or number, or a problem."""
        return self.value(_value_signal, value, where)

    def hosts(self, value, where):
        """[user@]host[:port] names (see _value_hosts)."""
        return self.value(_value_hosts, value, where)

    def mapping(self, value, where):
        """A dict of string to string (numbers are accepted and written as text)."""
        if not isinstance(value, dict):
            return self.fail(where, "expected an object of names to strings, got %s"
                             % _type_name(value))
        result = {}
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                self.fail("%s.%s" % (where, key), "expected a string, got %r; quote it" % (item,))
            elif self.string(str(item), "%s.%s" % (where, key)) is not _INVALID:
                result[str(key)] = str(item)
        return result


#: Kubernetes fields that procwrap spells or does differently: what to
#: write instead, said where the field is refused.
_KEY_REF_HINT = ("procwrap reads values from location strings: write valueFrom: {location: "
                 "...}, like FILE:/etc/secrets/KEY, VAULT:secret/app|JP:$.key or AWS_SM:NAME")
_FIELD_HINTS = {
    "terminationGracePeriodSeconds": "procwrap calls it stopTimeout (seconds from the stop "
                                     "signal to SIGKILL)",
    "secretKeyRef": _KEY_REF_HINT,
    "configMapKeyRef": _KEY_REF_HINT,
    "fieldRef": "no pod here: have the Downward API set a variable in procwrap's environment "
                "and write valueFrom: {location: ENV:NAME}",
    "resourceFieldRef": "no pod here: write the value, or valueFrom: {location: ENV:NAME}",
    "secretRef": "write envFrom: [{location: ...}] with a location string of a dictionary, "
                 "like FILE:/etc/app.env or VAULT:secret/app",
    "configMapRef": "write envFrom: [{location: ...}] with a location string of a "
                    "dictionary, like FILE:/etc/app.env",
    "securityContext": "procwrap's field is user: NAME[:GROUP] (runAsUser, runAsGroup)",
    "image": "procwrap runs commands, not images: give command (and args)",
}

_TOP_FIELDS = ("init", "processes", "postStart", "finish", "finishTimeout", "env", "logs",
               "http", "readinessFile", "statusPort", "ctlSocket", "etcd", "labels")
_ETCD_FIELDS = ("endpoints", "ttl", "prefix", "user", "password", "cacert", "cert", "key")
#: postStart: one-shots once all are ready; finish: once all have stopped, at the end
_SECTIONS = ("init", "processes", "postStart", "finish")
_LOG_FILE_FIELDS = ("maxBytes", "backups")      #: of logs, top-level and per entry
_LOGS_FIELDS = ("format", "mergeJson", "maxLineBytes", "directory") + _LOG_FILE_FIELDS
_ENV_POLICY_FIELDS = ("pass",)
#: An entry's fields that put it on another host (through one shared link).
REMOTE_FIELDS = ("host", "via", "sudo", "python", "sshOptions", "keepalive")
_ENTRY_FIELDS = ("name", "command", "args", "shell", "env", "envFile", "envFrom", "workingDir",
                 "user", "stopSignal", "stopTimeout", "labels", "timeout", "statusUpdates",
                 "mergeStderr", "logs", "chroot") + REMOTE_FIELDS
_PROCESS_FIELDS = _ENTRY_FIELDS + ("restartPolicy", "backoff", "essential", "dependsOn") \
    + PROBE_KINDS + ("lifecycle", "taskName", "taskUuid", "singleton", "maxConcurrency", "lock",
                     "autostart", "startSeconds", "successCodes", "priority", "finish",
                     "replicas", "memoryLimit", "promTarget")
_BACKOFF_FIELDS = ("initial", "max", "factor", "resetAfter", "limit")


def _load_config(source, where):
    """The parsed config from a path, '-' (JSON on stdin) or JSON text."""
    if source.lstrip().startswith("{"):
        return _parse_config(source, "json", where)
    if source == "-":
        data = getattr(sys.stdin, "buffer", sys.stdin).read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError("stdin: larger than %d MiB; a config is smaller"
                              % (MAX_FILE_BYTES >> 20))
        return _parse_config(data, "json", "stdin")
    extension = os.path.splitext(source)[1].lower()
    formats = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}
    if extension not in formats:
        raise ConfigError("%s: unknown config type %r; name it .json, .toml, .yaml or .yml"
                          % (source, extension or "(no extension)"))
    try:
        data = _read_file(source)
    except (OSError, ValueError) as error:
        raise ConfigError("%s: cannot read config %r: %s; fix the path"
                          % (where, source, _read_error(error)))
    return _parse_config(data, formats[extension], source)


def _read_config(settings, environ):
    """The config of -c (or --procfile): a file, stdin or JSON text; a
    Procfile becomes the config that runs it."""
    source = settings["config"]
    if settings.procfile:
        return _procfile_config(source, settings, environ)
    if os.path.isdir(source):
        return _load_fragments(source, settings.where("config"))
    return _load_config(source, settings.where("config"))


class _Merged(dict):
    """A config merged from fragments; `places` names each entry's file."""
    places = None           #: section -> ['FILE: section[i]', ...], one per entry


def _load_fragments(directory, where):
    """-c DIR: its *.json, *.yaml, *.yml and *.toml files, in name order,
    merged: entries of a section by name (a fragment may add fields to an
    entry another one defines), other settings by key; the same field set
    differently in two files is an error naming both."""
    try:
        kinds = (".json", ".yaml", ".yml", ".toml")
        names = sorted(name for name in os.listdir(directory) if not name.startswith(".")
                       and os.path.splitext(name)[1].lower() in kinds)
    except OSError as error:
        raise ConfigError("%s: cannot list %r: %s" % (where, directory, error.strerror))
    if not names:
        raise ConfigError("%s: %s has no *.json, *.yaml, *.yml or *.toml file; put the "
                          "config's fragments there" % (where, directory))
    merged, origin = _Merged(), {}      #: origin: (key path) -> the file that set it
    merged.places = {}
    for name in names:
        path = os.path.join(directory, name)
        fragment = _load_config(path, where)
        if not isinstance(fragment, dict):
            raise ConfigError("%s: expected an object of settings and sections, got %s"
                              % (path, _type_name(fragment)))
        for key, value in fragment.items():
            if key in _SECTIONS and isinstance(value, list):
                section = merged.setdefault(key, [])
                places = merged.places.setdefault(key, [])
                for index, entry in enumerate(value):
                    entry_name = entry.get("name") if isinstance(entry, dict) else None
                    found = [i for i, old in enumerate(section) if isinstance(old, dict)
                             and entry_name is not None and old.get("name") == entry_name]
                    if not found:
                        section.append(dict(entry) if isinstance(entry, dict) else entry)
                        places.append("%s: %s[%d]" % (path, key, index))
                        if entry_name is not None:
                            for field in entry:
                                origin[(key, entry_name, field)] = path
                        continue
                    old = section[found[0]]
                    for field, item in entry.items():
                        _merge_field(old, field, item, origin, (key, entry_name, field), path,
                                     "%s %r: %s" % (key, entry_name, field))
            else:
                _merge_field(merged, key, value, origin, (key,), path, key)
    return merged


def _merge_field(target, key, value, origin, place, path, what):
    """target[key] = value from fragment `path`, one level deep for objects;
    a different value already set by another file is an error naming both."""
    if key not in target:
        target[key] = dict(value) if isinstance(value, dict) else value
        origin[place] = path
        if isinstance(value, dict):
            for inner in value:
                origin[place + (inner,)] = path
        return
    if target[key] == value:
        return
    if isinstance(value, dict) and isinstance(target[key], dict):
        for inner, item in value.items():
            _merge_field(target[key], inner, item, origin, place + (inner,), path,
                         "%s.%s" % (what, inner))
        return
    raise ConfigError("%s: %s is also set, differently, in %s; set it in one file"
                      % (path, what, origin.get(place, "another file")))


def _is_procfile(path):
    """A Procfile is known by its name: Procfile, Procfile.dev, ..."""
    return os.path.basename(path).split(".")[0] == "Procfile"


_PROCFILE_LINE_RE = _Pattern(r"^([A-Za-z0-9_-]+):[ \t]*(.+?)[ \t\r]*$")


def _parse_procfile(text, where):
    """([(type, command)], warnings) of a Procfile: `name: command` lines
    (foreman's and honcho's pattern); blank and # lines skipped, any other
    line skipped with a warning, as they skip it (they say nothing)."""
    entries, warnings, seen = [], [], {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _PROCFILE_LINE_RE.match(line)
        if match is None:
            if line.strip() and not line.lstrip().startswith("#"):
                warnings.append("%s:%d: not `name: command`, skipped (as foreman and honcho "
                                "do); make it a comment with #" % (where, number))
            continue
        name, command = match.groups()
        if name in seen:
            raise ConfigError("%s:%d: process type %r is also on line %d; give each a line "
                              "of its own name" % (where, number, name, seen[name]))
        seen[name] = number
        entries.append((name, command))
    return entries, warnings


def _procfile_config(path, settings, environ):
    """The config that runs a Procfile as foreman and honcho do: each line
    through /bin/sh -c, `formation` copies named TYPE.N, PORT from the base
    (--port, else PORT of the env files, else of the environment, else 5000)
    + 100 per line + the copy's index, the env files (.env beside the
    Procfile when there) in each environment, and the first exit ends the
    run with its status (--keep-going: restarts instead)."""
    where = settings.where("config")
    try:
        text = _read_file(path).decode("utf-8")
    except (OSError, ValueError) as error:
        raise ConfigError("%s: cannot read Procfile %r: %s; fix the path"
                          % (where, path, _read_error(error)))
    entries, warnings = _parse_procfile(text, path)
    for warning in warnings:
        sys.stderr.write(WARNING_MSG % warning + "\n")
    if not entries:
        raise ConfigError("%s: no `name: command` line; a Procfile lists a process per line"
                          % path)
    files = settings["env_file"]
    if not files:
        default = os.path.join(os.path.dirname(path), ".env")
        files = [default] if os.path.isfile(default) else []
    port = settings["port"]
    if port is None:
        for name in files:
            try:
                bindings = _parse_dotenv(_read_file(name).decode("utf-8"), name, environ)
            except (OSError, ValueError):
                continue            # said when the entry reads it
            port = dict(bindings).get("PORT", port)
        port = port or environ.get("PORT") or PROCFILE_PORT
        try:
            port = _value_port(int(port))
        except (ValueError, _BadValue):
            raise ConfigError("PORT: %r is not a port; give --port N" % (port,))
    counts = dict(settings["formation"])
    types = [name for name, _ in entries]
    for name in counts:
        if name != "all" and name not in types:
            raise ConfigError("--formation: no process type %r in %s%s" % (
                name, path, _did_you_mean(name, types) or "; it has " + ", ".join(types)))
    processes = []
    for index, (name, command) in enumerate(entries):
        for copy in range(counts.get(name, counts.get("all", 1))):
            label = "%s.%d" % (name, copy + 1)
            entry = {"name": label, "command": command.replace("$", "$$"), "shell": True,
                     "env": {"PORT": str(port + 100 * index + copy), "PS": label},
                     "stopTimeout": PROCFILE_STOP_TIMEOUT}
            if files:
                entry["envFile"] = list(files)
            if not settings["keep_going"]:
                entry.update(restartPolicy="Never", essential=True)
            processes.append(entry)
    config = {"processes": processes}
    if _isatty(1):
        config["logs"] = {"format": "text"}
    return config


def _parse_config(data, fmt, where):
    """Config text or bytes in a format; ConfigError with the parser's position."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("%s: not UTF-8 text; save the config as UTF-8" % where)
    try:
        return _parse_text(data, fmt, where)
    except _ShapeError as error:
        raise ConfigError("%s: %s" % (where, error))
    except ValueError as error:
        raise ConfigError("%s: %s; fix the %s syntax"
                          % (where, error, fmt.upper() if fmt != "yaml" else "YAML"))


def _build_specs(config, environ, skip=(), check_root=True, secrets=None):
    """(init specs, process specs, settings) from a parsed config; ConfigError lists every problem.

    `environ` is procwrap's own environment; the top-level `env.pass` list
    narrows what of it children see.  Entries named in `skip` are left out.
    `secrets` (a _Secrets) resolves every location, which may raise
    SecretError; by default (a _CheckingSecrets) locations are only parsed.
    """
    if secrets is None:
        secrets = _CheckingSecrets(environ)
    checker = _Checker()
    top = checker.fields(config, "config", _TOP_FIELDS)
    settings = {"format": "json", "merge_json": False, "max_line": MAX_LINE_BYTES}
    logs = checker.fields(top.get("logs", {}), "logs", _LOGS_FIELDS)
    if "format" in logs:
        settings["format"] = checker.choice(logs["format"], "logs.format", LOG_FORMATS)
    if "mergeJson" in logs:
        settings["merge_json"] = checker.boolean(logs["mergeJson"], "logs.mergeJson")
    if "maxLineBytes" in logs:
        settings["max_line"] = checker.number(logs["maxLineBytes"], "logs.maxLineBytes", 80, True)
    files = _build_log_file(logs, "logs", checker, {"directory": None,
                                                    "max_bytes": LOG_FILE_MAX_BYTES,
                                                    "backups": LOG_FILE_BACKUPS})
    if "http" in top:
        try:
            settings["http"] = _parse_http_address(top["http"], "http")
        except UsageError as error:
            checker.problems.append(str(error))
    if "readinessFile" in top:
        settings["readiness_file"] = checker.string(top["readinessFile"], "readinessFile")
    if "statusPort" in top:
        settings["status_port"] = checker.port(top["statusPort"], "statusPort", listen=True)
    if "ctlSocket" in top:
        settings["ctl_socket"] = checker.string(top["ctlSocket"], "ctlSocket")
    if "etcd" in top:
        settings["etcd"] = _build_etcd(top["etcd"], checker)
    policy = checker.fields(top.get("env", {}), "env", _ENV_POLICY_FIELDS)
    patterns = checker.strings(policy["pass"], "env.pass") if "pass" in policy else None
    builder = _EnvBuilder(environ, None if patterns is _INVALID else patterns, secrets, checker)

    # Three passes over the entries: their fields, then names across all
    # sections (unique, and what --skip names), then each entry built.  Every
    # problem of every pass is collected, so one `check` lists them all.
    entries = dict((section, []) for section in _SECTIONS)
    places = getattr(config, "places", None) or {}     # -c DIR: each entry's file
    for section in _SECTIONS:
        value = top.get(section, [])
        if not isinstance(value, list):
            checker.fail(section, "expected a list of entries, got %s" % _type_name(value))
            continue
        for index, entry in enumerate(value):
            where = "%s[%d]" % (section, index)
            if index < len(places.get(section, ())):
                where = places[section][index]
            known = _PROCESS_FIELDS if section == "processes" else _ENTRY_FIELDS
            fields = checker.fields(entry, where, known, required=("name", "command"))
            entries[section].extend(_replicas(fields, where, checker))
    if "processes" not in top and "init" not in top and isinstance(config, dict):
        checker.fail("config", "nothing to run; add a `processes` list (and optionally `init`)")

    names = {}
    for section in _SECTIONS:
        for where, fields in entries[section]:
            name = fields.get("name")
            base = fields.get(_REPLICA_OF)
            if base is not None and names.get(base) != where:
                if base in names:
                    checker.fail(where + ".name", "%r is also the name of %s; names must be "
                                 "unique" % (base, names[base]))
                names[base] = where         # ctl, --skip and dependsOn name them all
            if isinstance(name, str) and name in names:
                checker.fail(where + ".name", "%r is also the name of %s; names must be unique"
                             % (name, names[name]))
            elif isinstance(name, str):
                names[name] = where
    unknown_skips = [name for name in skip if name not in names]
    if unknown_skips:
        checker.fail("--skip", "no entry named %s%s" % (", ".join(map(repr, unknown_skips)),
                     _did_you_mean(unknown_skips[0], names)))

    # Skipped entries are not built: their secrets are not resolved, their
    # user need not exist here (a config shared by hosts that differ).
    specs = dict((section, []) for section in _SECTIONS)
    for section in _SECTIONS:
        for where, fields in entries[section]:
            if fields.get("name") in skip or fields.get(_REPLICA_OF) in skip:
                continue
            spec = _build_spec(fields, where, builder, checker, check_root, section)
            spec.replica_of = fields.get(_REPLICA_OF)
            _apply_log_file(spec, fields, where, files, checker)
            specs[section].append(spec)
    _depend_on_replicas(specs["processes"])
    _check_dependencies(specs["processes"], set(skip), names, checker)
    log_files = {}
    for spec in specs["init"] + specs["processes"] + specs["postStart"]:
        if spec.log_file in log_files:
            checker.fail(spec.where + ".logs.file", "%r is the log file of %s too; give each "
                         "entry its own (each rotates its file)"
                         % (spec.log_file, log_files[spec.log_file]))
        elif spec.log_file:
            log_files[spec.log_file] = spec.where
    for spec in specs["processes"]:
        if spec.lock_name and "etcd" not in settings:
            checker.fail(spec.where, "a lock across machines needs the top-level etcd "
                         "section: {\"etcd\": {\"endpoints\": [URL]}}")
    settings["finish_timeout"] = checker.seconds(top.get("finishTimeout", FINISH_TIMEOUT),
                                                 "finishTimeout")
    settings["labels"] = checker.mapping(top.get("labels", {}), "labels")
    if checker.problems:        # once each: replicas share their entry's problems
        raise ConfigError(sorted(set(checker.problems), key=checker.problems.index))
    settings["post_start"] = specs["postStart"]
    settings["finish"] = specs["finish"]
    settings["warnings"] = checker.warnings
    return specs["init"], specs["processes"], settings


def _build_spec(fields, where, builder, checker, check_root, section="processes"):
    """One ProcessSpec from an entry; its problems go to the checker."""
    spec = _ProcessSpec(where=where, labels={})
    name = checker.string(fields.get("name", ""), where + ".name")
    if name is not _INVALID and (not _NAME_RE.match(name) or name == "procwrap"):
        checker.fail(where + ".name", "%r is not a usable name; use letters, digits, '.', '_' "
                     "and '-' (and not 'procwrap')" % name)
    spec.name = name
    command = _build_command(fields, where, checker)
    if command is not _INVALID and not command:
        checker.fail(where + ".command", "is empty; give the program to run")
    args = checker.strings(fields.get("args", []), where + ".args")

    spec.remote = _build_remote(fields, where, checker)
    if "user" in fields:
        user = checker.string(fields["user"], where + ".user")
        if user is not _INVALID and spec.remote is not None:
            spec.user = _User(user, None, None, None, None)     # the agent resolves it there
        elif user is not _INVALID:
            try:
                spec.user = _resolve_user(user, where + ".user")
                if check_root and os.geteuid() not in (0, spec.user.uid):
                    checker.fail(where + ".user", NEED_ROOT_MSG % os.geteuid())
            except ConfigError as error:
                checker.problems.extend(error.problems)
    env, secret_names = _entry_env(fields, where, spec.user, builder, checker)
    spec.env = env
    spec.fingerprint = hash(repr((sorted(fields.items(), key=str),
                                  sorted((k, str(v)) for k, v in env.items()))))
    secrets = builder.secrets
    if secrets.ttl is not None:
        spec.make_env = _entry_rebuilder(fields, where, spec.user, builder)
        spec.secrets_ttl = secrets.ttl
    if command is not _INVALID and args is not _INVALID:
        for field, words in (("command", command), ("args", args)):
            for word in words:
                for match in _K8S_VAR_RE.finditer(word):
                    name = match.group(1)
                    # By name, or by value: an envFile's ${PASSWORD} carries one too.
                    if name in secret_names or (name in env and secrets.redact.contains(env[name])):
                        checker.fail("%s.%s" % (where, field), SECRET_IN_ARGV_MSG
                                     % (name, name))
        spec.argv = [_expand_vars(word, env) for word in command + args]

    if "chroot" in fields:
        root = checker.string(fields["chroot"], where + ".chroot")
        if root is not _INVALID and spec.remote is not None:
            checker.fail(where + ".chroot", "applies to a process on this machine; drop it or "
                         "the host")
        elif root is not _INVALID and not os.path.isdir(root):
            checker.fail(where + ".chroot", NOT_A_DIR_MSG % root)
        elif root is not _INVALID and check_root and os.geteuid() != 0:
            checker.fail(where + ".chroot", "needs root (chroot(2)); run procwrap as root, "
                         "or drop it")
        spec.chroot = root if root is not _INVALID else None
    if "workingDir" in fields:
        workdir = checker.string(fields["workingDir"], where + ".workingDir")
        inside = os.path.join(spec.chroot, workdir.lstrip("/")) if spec.chroot and \
            workdir is not _INVALID else workdir      # the directory is in the new root
        if workdir is not _INVALID and spec.remote is None and not os.path.isdir(inside):
            checker.fail(where + ".workingDir", NOT_A_DIR_MSG % workdir)
        spec.workdir = workdir
    _apply_fields(fields, where, spec, _ENTRY_TABLE, checker)
    if section != "processes":      # init, postStart and finish entries run once
        spec.restart = "Never"
    else:
        spec.restart = checker.choice(fields.get("restartPolicy", "Always"),
                                      where + ".restartPolicy", RESTART_POLICIES)
        spec.essential = checker.boolean(fields.get("essential", False), where + ".essential")
        for field, attribute in (("taskName", "task_name"), ("taskUuid", "task_uuid")):
            if field in fields:
                setattr(spec, attribute, checker.string(fields[field], "%s.%s" % (where, field)))
        _build_lock(fields, where, spec, checker)
        spec.depends_on, spec.conditions, spec.depends_places = _build_depends_on(
            fields.get("dependsOn", []), where + ".dependsOn", checker)
        _apply_backoff(fields.get("backoff", {}), where + ".backoff", spec, checker)
        _apply_fields(fields, where, spec, _PROCESS_TABLE, checker)
        backoff = fields.get("backoff")
        backoff = backoff if isinstance(backoff, dict) else {}
        if spec.start_seconds not in (None, _INVALID):
            # supervisord's startretries count failed starts only: a run that
            # lasted startSeconds started well, and forgets the crash loop;
            # three failed starts in a row and it gives up, as supervisord does.
            if "resetAfter" not in backoff:
                spec.backoff_reset = spec.start_seconds
            if "limit" not in backoff:
                spec.restart_limit = START_RETRIES
        spec.probes = tuple(_build_probe(fields[kind], "%s.%s" % (where, kind), kind, checker)
                            for kind in PROBE_KINDS if kind in fields)
        if "finish" in fields:
            spec.finish = _build_finish(fields["finish"], where + ".finish", checker)
        if "promTarget" in fields:
            target = checker.string(fields["promTarget"], where + ".promTarget")
            if target is not _INVALID and not target.startswith(("http://", "https://")):
                checker.fail(where + ".promTarget", "expected an http:// or https:// URL, "
                             "like http://127.0.0.1:9100/metrics")
            spec.prom_target = target if target is not _INVALID else None
        lifecycle = checker.fields(fields.get("lifecycle", {}), where + ".lifecycle",
                                   ("postStart", "preStop"))
        for name in ("postStart", "preStop"):
            if name in lifecycle:
                hook = _build_hook(lifecycle[name], "%s.lifecycle.%s" % (where, name), name,
                                   checker)
                if name == "preStop" and _INVALID not in (spec.stop_timeout, hook.timeout):
                    # The grace period counts from before the hook (Kubernetes' rule).
                    hook.timeout = min(hook.timeout, spec.stop_timeout) or 0.01
                setattr(spec, "post_start" if name == "postStart" else "pre_stop", hook)
    places = ["%s.%s" % (where, kind) for kind in PROBE_KINDS if kind in fields] + [
        "%s.lifecycle.%s" % (where, name) for name in ("postStart", "preStop")]
    for check, place in zip(tuple(spec.probes) + (spec.post_start, spec.pre_stop), places):
        field = {"sql": "dsn", "amqp": "url"}.get(getattr(check, "handler", None))
        if field and isinstance(check.options.get(field), str):
            place = "%s.%s.%s" % (place, check.handler, field)
            check.options[field] = _secret_option(check.options[field], place, spec, builder,
                                                  checker)
            if check.handler == "amqp":
                _amqp_server(check.options, place, checker)
    if spec.remote is not None:
        spec.labels = dict(spec.labels or {}, host=spec.remote.host)
        if "memoryLimit" in fields:
            checker.fail(where + ".memoryLimit", "looks at this machine's /proc, not at the "
                         "process's host; set a limit there (ulimit, a cgroup)")
        for probe, kind in zip(spec.probes, [k for k in PROBE_KINDS if k in fields]):
            if probe.handler not in (None, "exec", "httpGet", "tcpSocket", "env", "sql", "amqp"):
                checker.fail("%s.%s.%s" % (where, kind, probe.handler), "looks at this machine, "
                             "not at the process's host; use an exec probe there (test -e, "
                             "kill -0 $(cat PIDFILE))")
            handler = fields[kind].get(probe.handler) if isinstance(fields[kind], dict) else None
            if probe.handler in ("httpGet", "tcpSocket") and isinstance(handler, dict) \
                    and "host" not in handler:
                probe.options["host"] = spec.remote.destination.rpartition("@")[2]
    return spec


def _secret_option(text, where, spec, builder, checker):
    """A probe's dsn or url: a location string (VAULT:db|JP:$.dsn, FILE:...)
    resolved like an env value, or a literal with $(VAR) from the process's
    environment (a variable from a secret, say); kept out of every message."""
    if _PROVIDER_RE.match(text):
        value = builder.value("location", where.rpartition(".")[2], text, where,
                              dict(spec.env or {}), checker)
        text = value if isinstance(value, str) else ""
    else:
        text = _expand_vars(text, spec.env or {})
    if text:
        builder.secrets.redact.add(text)
    return text


def _amqp_server(options, where, checker):
    """An amqp check's url, amqp://USER:PASSWORD@HOST:PORT/VHOST, into its
    parts with RabbitMQ's defaults (guest, guest, localhost, 5672, vhost
    "/"); a mistake is named without the url, which may hold a password."""
    from urllib.parse import unquote, urlsplit
    url = options.pop("url")
    if not url:
        return      # a location that did not resolve: said already
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return checker.fail(where, "is not a URL (%s); expected amqp://USER:PASSWORD@HOST:PORT"
                            "/VHOST" % str(error).replace(url, "the url"))
    if parts.scheme == "amqps":
        return checker.fail(where, "amqps:// (TLS) is not supported; probe the TLS port with "
                            "tcpSocket, or an exec probe with a client")
    if parts.scheme != "amqp":
        return checker.fail(where, "expected amqp://USER:PASSWORD@HOST:PORT/VHOST, %s"
                            % ("without a scheme" if not parts.scheme else "not %s://"
                               % parts.scheme[:10]))
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    options.update(host=parts.hostname or "localhost", port=port or 5672,
                   user=unquote(parts.username if parts.username is not None else "guest"),
                   password=unquote(parts.password if parts.password is not None else "guest"),
                   vhost=vhost)
    for field in ("user", "vhost"):
        if len(options[field].encode("utf-8")) > 255:
            checker.fail(where, "its %s is longer than AMQP's 255 bytes" % field)


_REPLICA_OF = " replicaOf"   #: a replica's fields: its entry's name (no field is spelled so)
_REPLICA_INDEX = " replica"  #: ... and its index, PROCWRAP_REPLICA


def _replicas(fields, where, checker):
    """[(where, fields)] of an entry: itself, or with `replicas: N` N copies
    named NAME-0 ... NAME-(N-1), each with PROCWRAP_REPLICA (its index) first
    in its env (so $(PROCWRAP_REPLICA) works in the rest) and its own log file."""
    if "replicas" not in fields:
        return [(where, fields)]
    count = checker.number(fields["replicas"], where + ".replicas", 1, True, REPLICAS_MAX)
    name = fields.get("name")
    if count is _INVALID or not isinstance(name, str):
        return [(where, dict((k, v) for k, v in fields.items() if k != "replicas"))]
    copies = []
    for index in range(count):
        copy = dict((k, v) for k, v in fields.items() if k != "replicas")
        copy["name"], copy[_REPLICA_OF] = "%s-%d" % (name, index), name
        copy[_REPLICA_INDEX] = str(index)
        logs = fields.get("logs")
        if isinstance(logs, dict) and isinstance(logs.get("file"), str):
            root, extension = os.path.splitext(logs["file"])
            copy["logs"] = dict(logs, file="%s-%d%s" % (root, index, extension))
        copies.append((where, copy))
    return copies


def _depend_on_replicas(specs):
    """dependsOn naming a replicated entry waits for each of its replicas."""
    replicas = {}
    for spec in specs:
        if spec.replica_of is not None:
            replicas.setdefault(spec.replica_of, []).append(spec.name)
    if not replicas:
        return
    for spec in specs:
        if not isinstance(spec.depends_on, (list, tuple)) or not any(
                name in replicas for name in spec.depends_on):
            continue        # none, or a mistake said already
        names, conditions, places = [], dict(spec.conditions), dict(spec.depends_places)
        for name in spec.depends_on:
            for each in replicas.get(name, [name]):
                names.append(each)
                conditions[each] = spec.conditions.get(name, "Ready")
                places[each] = spec.depends_places.get(name)
        spec.depends_on, spec.conditions, spec.depends_places = tuple(names), conditions, places


def _build_command(fields, where, checker):
    """The command's words: a list as given; a string split like a shell, or
    with shell: true run by /bin/sh -c (as foreman and honcho run a
    Procfile's lines).  A string with shell syntax and no `shell` field
    runs split, with a warning: its operators would be arguments."""
    command, shell = fields.get("command", ["-"]), fields.get("shell")
    if shell is True:
        if not isinstance(command, str):
            return checker.fail(where + ".shell", "true runs a command given as one string; "
                                "write command as a string, or drop shell")
        if "args" in fields:
            checker.fail(where + ".args", "with shell: true the command string is the whole "
                         "script; put the arguments in it")
        script = checker.string(command, where + ".command")
        return _INVALID if script is _INVALID else ["/bin/sh", "-c", script]
    if shell is None and isinstance(command, str):
        syntax = _shell_syntax(command)
        if syntax:
            checker.warn(where + ".command", "uses shell syntax (%s) but runs without a shell, "
                         "split into words; write shell: true to run it through /bin/sh -c, or "
                         "shell: false to keep the words as they are" % syntax)
    return checker.strings(command, where + ".command", split=True)


def _build_log_file(fields, where, checker, defaults):
    """The log-file settings of a `logs` object (top-level: directory too)
    over `defaults`: {directory or file, max_bytes, backups}."""
    found = dict(defaults)
    for field in ("directory", "file"):
        if field in fields:
            found[field] = checker.string(fields[field], "%s.%s" % (where, field))
    if "maxBytes" in fields:
        found["max_bytes"] = checker.value(_value_bytes, fields["maxBytes"], where + ".maxBytes")
    if "backups" in fields:
        found["backups"] = checker.number(fields["backups"], where + ".backups", 0, True, 1000)
    return found


def _apply_log_file(spec, fields, where, top, checker):
    """An entry's log file: its logs.file, or NAME.log in the top-level
    logs.directory; sizes from its own logs, else the top-level ones."""
    logs = checker.fields(fields.get("logs", {}), where + ".logs",
                          ("file", "format", "level", "stderrLevel") + _LOG_FILE_FIELDS)
    if "format" in logs:
        spec.log_format = checker.choice(logs["format"], where + ".logs.format",
                                         ("json", "logfmt", "text"))
    if "level" in logs:
        spec.log_level = checker.choice(logs["level"], where + ".logs.level", ("auto", "none"))
    if "stderrLevel" in logs:
        spec.stderr_level = checker.choice(logs["stderrLevel"], where + ".logs.stderrLevel",
                                           ("debug", "info", "warning", "error"))
    own = _build_log_file(logs, where + ".logs", checker, top)
    path = own.get("file")
    if path is None and top["directory"] not in (None, _INVALID) \
            and isinstance(spec.name, str):
        path = os.path.join(top["directory"], spec.name + ".log")
    if path is not None and path is not _INVALID:
        if spec.remote is not None:
            checker.warn(where + ".logs", "its log file is written here, by procwrap, from "
                         "what comes over the link")
        spec.log_file, spec.log_max_bytes, spec.log_backups = (
            path, own["max_bytes"], own["backups"])


def _build_etcd(value, checker):
    """The top-level etcd section: endpoints, and the rest as the wrap-mode
    flags name them (without --etcd-/--lock-); the password is a location."""
    fields = checker.fields(value, "etcd", _ETCD_FIELDS, required=("endpoints",))
    etcd = {"prefix": LOCK_PREFIX, "ttl": LOCK_TTL}
    endpoints = fields.get("endpoints", [])
    if isinstance(endpoints, str):
        endpoints = [url for url in endpoints.split(",") if url.strip()]
    etcd["endpoints"] = checker.strings(endpoints, "etcd.endpoints")
    if "ttl" in fields:
        etcd["ttl"] = checker.number(fields["ttl"], "etcd.ttl", 1)
    for field in ("prefix", "user", "password", "cacert", "cert", "key"):
        if field in fields:
            etcd[field] = checker.string(fields[field], "etcd." + field)
    return etcd


def _build_lock(fields, where, spec, checker):
    """singleton (a lock of one slot named after the process), or
    maxConcurrency with lock: the slots it must hold to run."""
    singleton = checker.boolean(fields.get("singleton", False), where + ".singleton")
    if "maxConcurrency" in fields and singleton is True:
        return checker.fail(where + ".maxConcurrency", "a singleton has one slot; drop "
                            "maxConcurrency or singleton")
    if "lock" in fields:
        name = checker.string(fields["lock"], where + ".lock")
        if name is not _INVALID and ("/" in name or not name.strip()):
            return checker.fail(where + ".lock", "%r is not a lock name; use one without '/'"
                                % name)
        spec.lock_name = name
    if "maxConcurrency" in fields:
        spec.lock_limit = checker.number(fields["maxConcurrency"], where + ".maxConcurrency",
                                         1, True)
        if "lock" not in fields:
            checker.fail(where + ".maxConcurrency", "needs lock: the name its slots share "
                         "across machines")
    elif singleton is True and spec.lock_name is None:
        spec.lock_name = spec.name


def _build_remote(fields, where, checker):
    """The _Remote of an entry with a `host` (and `via`, `sudo`, `python`,
    `sshOptions`, `keepalive`), or None."""
    if "host" not in fields:
        extra = [name for name in REMOTE_FIELDS if name in fields]
        if extra:
            checker.fail("%s.%s" % (where, extra[0]), "applies to a process on another host; "
                         "give `host` too, or remove it")
        return None
    hosts = checker.hosts(fields["host"], where + ".host")
    if hosts is not _INVALID and len(hosts) != 1:
        hosts = checker.fail(where + ".host", "names one host; give each host an entry")
    via = checker.hosts(fields["via"], where + ".via") if "via" in fields else []
    sudo = checker.string(fields["sudo"], where + ".sudo") if "sudo" in fields else None
    python = checker.string(fields.get("python", "python3"), where + ".python")
    options = checker.strings(fields.get("sshOptions", []), where + ".sshOptions")
    keepalive = REMOTE_KEEPALIVE
    if "keepalive" in fields:
        keepalive = checker.seconds(fields["keepalive"], where + ".keepalive")
    if _INVALID in (hosts, via, sudo, python, options, keepalive):
        return None
    return _Remote(hosts[0], options, python, keepalive or REMOTE_KEEPALIVE, sudo, via)


def _build_probe(value, where, kind, checker):
    """A ProbeSpec from a livenessProbe/readinessProbe/startupProbe object."""
    fields = checker.fields(value, where, _PROBE_FIELDS + tuple(PROBE_HANDLERS) + ("grpc",))
    probe = _ProbeSpec(kind=kind[:-len("Probe")], options={})
    handlers = [name for name in fields if name in PROBE_HANDLERS or name == "grpc"]
    if "grpc" in handlers:
        checker.fail(where + ".grpc", "gRPC probes are not supported; use exec with "
                     "grpc_health_probe, or tcpSocket")
    elif len(handlers) != 1:
        checker.fail(where, "give exactly one handler: %s; got %s"
                     % (", ".join(PROBE_HANDLERS), ", ".join(handlers) or "none"))
    else:
        probe.handler = handlers[0]
        probe.options = _probe_options(fields[probe.handler], "%s.%s" % (where, probe.handler),
                                       probe.handler, checker)
    _apply_fields(fields, where, probe, _PROBE_TABLE, checker)
    if probe.kind in ("liveness", "startup") and probe.success_threshold not in (1, _INVALID):
        checker.fail(where + ".successThreshold", "must be 1 for a %s probe (as in Kubernetes)"
                     % probe.kind)
    return probe


def _build_finish(value, where, checker):
    """A process's finish command (s6's finish script): a command, or
    {command, timeoutSeconds}; an exec hook that gets the exit code (256
    when a signal ended it) and the signal's number as its last arguments."""
    fields = {"command": value} if isinstance(value, (list, str)) else checker.fields(
        value, where, ("command", "timeoutSeconds"), required=("command",))
    command = checker.strings(fields.get("command", []), where + ".command"
                              if not isinstance(value, (list, str)) else where, split=True)
    if command is not _INVALID and not command:
        checker.fail(where, "the command is empty; give the program to run")
    timeout = checker.seconds(fields.get("timeoutSeconds", FINISH_TIMEOUT),
                              where + ".timeoutSeconds")
    return _ProbeSpec(kind="finish", handler="exec", options={"command": command},
                      timeout=timeout)


def _build_hook(value, where, name, checker):
    """A lifecycle hook as a ProbeSpec run once: exec, httpGet or sleep, with
    procwrap's timeoutSeconds (default 30; preStop: at most the stop timeout)."""
    fields = checker.fields(value, where, ("exec", "httpGet", "sleep", "sql", "timeoutSeconds"))
    hook = _ProbeSpec(kind=name, timeout=HOOK_TIMEOUT, options={})
    handlers = [key for key in fields if key in ("exec", "httpGet", "sleep", "sql")]
    unknown = [key for key in fields if key not in handlers and key != "timeoutSeconds"]
    if len(handlers) != 1:
        if handlers or not unknown:         # an unknown key alone was reported already
            checker.fail(where, "give exactly one handler: exec, httpGet, sleep or sql; got %s"
                         % (", ".join(handlers) or "none"))
        return hook
    hook.handler = handlers[0]
    place = "%s.%s" % (where, hook.handler)
    if hook.handler == "sleep":
        sleep = checker.fields(fields["sleep"], place, ("seconds",), required=("seconds",))
        hook.options = {"seconds": checker.number(sleep.get("seconds", 0), place + ".seconds",
                                                  0)}
    else:
        hook.options = _probe_options(fields[hook.handler], place, hook.handler, checker)
    if "timeoutSeconds" in fields:
        hook.timeout = checker.number(fields["timeoutSeconds"], where + ".timeoutSeconds", 0.01)
    return hook


def _probe_options(value, where, handler, checker):
    """A probe handler's fields, checked, with defaults filled in."""
    required = {"exec": ("command",), "httpGet": ("port",), "tcpSocket": ("port",),
                "file": ("path",), "heartbeat": ("maxAgeSeconds",), "pidFile": ("path",),
                "env": ("name", "value"), "sql": ("driver", "dsn"), "amqp": ("url",)}
    fields = checker.fields(value if value is not None else {}, where, PROBE_HANDLERS[handler],
                            required=required.get(handler, ()))
    options = {"host": "127.0.0.1", "path": "/", "scheme": "HTTP", "headers": []}
    if "command" in fields:
        options["command"] = checker.strings(fields["command"], where + ".command", split=True)
        if options["command"] == []:
            checker.fail(where + ".command", "is empty; give the program to run")
    if "port" in fields:
        port = fields["port"]
        if isinstance(port, str) and not _is_digits(port):
            checker.fail(where + ".port", "named ports need a pod; give the number")
        else:
            options["port"] = checker.port(port, where + ".port")
    if "host" in fields:
        options["host"] = checker.string(fields["host"], where + ".host")
    if "path" in fields:
        options["path"] = checker.string(fields["path"], where + ".path")
        if handler == "httpGet" and isinstance(options["path"], str) \
                and not options["path"].startswith("/"):
            checker.fail(where + ".path", "must start with '/'")
    if "scheme" in fields:
        options["scheme"] = checker.choice(fields["scheme"], where + ".scheme", ("HTTP", "HTTPS"))
    if "maxAgeSeconds" in fields:
        options["max_age"] = checker.number(fields["maxAgeSeconds"], where + ".maxAgeSeconds", 0)
    if handler == "env":
        for field in ("name", "value"):
            if field in fields:
                options[field] = checker.string(fields[field], "%s.%s" % (where, field))
    if handler == "amqp" and "url" in fields:
        options["url"] = checker.string(fields["url"], where + ".url")
    if handler == "sql":
        options["query"] = "SELECT 1"
        if "driver" in fields:
            options["driver"] = checker.choice(fields["driver"], where + ".driver",
                                               tuple(SQL_DRIVERS))
        for field in ("dsn", "query"):
            if field in fields:
                options[field] = checker.string(fields[field], "%s.%s" % (where, field))
        if "expect" in fields:
            expect = fields["expect"]
            if isinstance(expect, bool) or not isinstance(expect, (str, int, float)):
                checker.fail(where + ".expect", "expected a string or a number, got %r"
                             % (expect,))
            else:
                options["expect"] = str(expect)
    headers = fields.get("httpHeaders", [])
    if not isinstance(headers, list):
        checker.fail(where + ".httpHeaders", "expected a list of {name, value}, got %s"
                     % _type_name(headers))
        headers = []
    for index, header in enumerate(headers):
        place = "%s.httpHeaders[%d]" % (where, index)
        header = checker.fields(header, place, ("name", "value"), required=("name", "value"))
        if "name" in header and "value" in header:
            options["headers"].append((checker.string(header["name"], place + ".name"),
                                       checker.string(header["value"], place + ".value")))
    return options


def _entry_env(fields, where, user, builder, checker):
    """(env, names of its secret variables) of one config entry: its envFile,
    envFrom and env fields checked, then composed by _compose_env."""
    files = []
    if "envFile" in fields:
        paths = fields["envFile"]
        paths = checker.strings([paths] if isinstance(paths, str) else paths,
                                where + ".envFile")
        if paths is not _INVALID:
            files = [(path, where + ".envFile") for path in paths]
    sources = _env_sources(fields.get("envFrom", []), where + ".envFrom", checker)
    pairs = _env_pairs(fields.get("env", {}), where + ".env", checker)
    if _REPLICA_INDEX in fields:      # first, so $(PROCWRAP_REPLICA) works in the rest
        import itertools
        pairs = itertools.chain([("PROCWRAP_REPLICA", fields[_REPLICA_INDEX])], pairs)
    env, names = _compose_env(builder, checker, user, files, sources, pairs, where + ".env")
    # 500 entries that add nothing need not hold 500 copies.
    return (builder.base if env == builder.base else env), names


def _compose_env(builder, checker, user, files, sources, pairs, where, expand=True):
    """One child's environment, for a config entry and for wrap mode alike,
    in Kubernetes' order: the builder's base (procwrap's own environment as
    passed, and what the top-level locations resolved), the user's HOME,
    USER and LOGNAME, env files [(path, place)], envFrom documents
    [(location, prefix, place)], then `pairs`: (name, value) or (name,
    (kind, text, place)) for a location or template to resolve.  $(VAR) in
    a value is expanded when `expand` (the command line's --env is taken
    as it is).  Problems go to `checker`; (env, names of secret variables)."""
    env = dict(builder.base)
    names = set(builder.secret_names)
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    for path, place in files:
        try:
            env.update(_read_dotenv(path, place, env))
        except ConfigError as error:
            checker.problems.extend(error.problems)
    for location, prefix, place in sources:
        for name, value in builder.documents(location, place, checker).items():
            env[prefix + name] = value
            names.add(prefix + name)
    for name, value in pairs:
        if not _ENV_NAME_RE.match(name):
            checker.fail(where, "%r is not a variable name; drop the '=' or NUL" % name)
        elif isinstance(value, tuple):
            kind, text, place = value
            resolved = builder.value(kind, name, text, place, env, checker)
            if resolved is not None:
                env[name] = resolved
                names.add(name)
        elif not expand:
            env[name] = value
        else:
            env[name] = _expand_vars(value, env)
            # A value built from a secret is a secret: $(URL) with URL holding
            # $(PASSWORD) must not reach argv either.
            if any(m.group(1) in names for m in _K8S_VAR_RE.finditer(value)):
                names.add(name)
    builder.finish(env)
    checker.problems.extend(_env_problems(env, where))
    return env, names


def _env_problems(env, where):
    """A line for each variable whose value no environment can hold (a NUL
    byte from an env file or a secret: execve cannot pass it, so the child
    could never start).  The value is not shown: it may be a secret."""
    return ["%s: the value of %s %s" % (where, name, _os_text_problem(value))
            for name, value in sorted(env.items()) if _os_text_problem(value)]


def _entry_rebuilder(fields, where, user, builder):
    """spec.make_env for --secrets-ttl: the entry's env from a new resolution pass."""
    def make_env():
        builder.secrets.begin()
        checker = _Checker()
        fresh = _EnvBuilder(builder.environ, builder.patterns, builder.secrets, checker)
        env = _entry_env(fields, where, user, fresh, checker)[0]
        if checker.problems:
            raise ConfigError(checker.problems)
        return env
    return make_env


def _env_sources(sources, where, checker):
    """`envFrom` checked: [{location, prefix}], each a dictionary of variables
    (as Kubernetes' envFrom, with a location string for the secret or map);
    yields (location, prefix, place), each once it is checked, so its
    problems come before those of the next one's document."""
    if not isinstance(sources, list):
        checker.fail(where, "expected a list of {location, prefix}, got %s" % _type_name(sources))
        return
    for index, item in enumerate(sources):
        place = "%s[%d]" % (where, index)
        item = checker.fields(item, place, ("location", "prefix"), required=("location",))
        if "location" not in item:
            continue
        location = checker.string(item["location"], place + ".location")
        prefix = checker.string(item.get("prefix", ""), place + ".prefix")
        if location is not _INVALID and prefix is not _INVALID:
            yield location, prefix, place + ".location"


def _env_pairs(entries, where, checker):
    """Kubernetes-style `env` checked: a map, or a list of {name, value} or
    {name, valueFrom: {location} or {template}}; yields the pairs _compose_env
    takes, all checked before the first (a generator: checked when
    _compose_env comes to them, after the envFrom documents)."""
    if isinstance(entries, dict):
        pairs = sorted(checker.mapping(entries, where).items())
    elif isinstance(entries, list):
        pairs = []
        for index, item in enumerate(entries):
            place = "%s[%d]" % (where, index)
            item = checker.fields(item, place, ("name", "value", "valueFrom"), required=("name",))
            if "name" not in item:
                continue
            name = checker.string(item["name"], place + ".name")
            if "valueFrom" in item:
                source = checker.fields(item["valueFrom"], place + ".valueFrom",
                                        ("location", "template"))
                if any(key not in ("location", "template") for key in source):
                    continue            # reported, with how to do it in procwrap
                if "value" in item or len(source) != 1:
                    checker.fail(place, "give value, valueFrom.location or valueFrom.template; "
                                 "exactly one")
                    continue
                kind, text = list(source.items())[0]
                text = checker.string(text, "%s.valueFrom.%s" % (place, kind))
                if text is not _INVALID and name is not _INVALID:
                    pairs.append((name, (kind, text, "%s.valueFrom.%s" % (place, kind))))
                continue
            value = item.get("value", "")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                checker.fail(place + ".value", "expected a string, got %r; quote it" % (value,))
            elif name is not _INVALID:
                pairs.append((name, str(value)))
    else:
        checker.fail(where, "expected an object or a list of {name, value}, got %s"
                     % _type_name(entries))
        return
    for pair in pairs:
        yield pair


def _apply_backoff(fields, where, spec, checker):
    """The `backoff` object: initial, max, factor, resetAfter (seconds) and limit."""
    fields = checker.fields(fields, where, _BACKOFF_FIELDS)
    _apply_fields(fields, where, spec, _BACKOFF_TABLE, checker)


#: The fields that are one value each, as (field, attribute of the spec, the
#: _Checker method that reads it, its arguments[, a value that counts as the
#: field's absence]).  Null is checked like any other value, and refused,
#: except for backoff.limit, where null means no limit, as absent does.
_ENTRY_TABLE = (
    ("stopSignal", "stop_signal", "signal", ()),
    ("stopTimeout", "stop_timeout", "seconds", ()),
    ("timeout", "timeout", "seconds", ()),
    ("labels", "labels", "mapping", ()),
    ("statusUpdates", "status_updates", "boolean", ()),
    ("mergeStderr", "merge_stderr", "boolean", ()),
    ("shell", "shell", "boolean", ()),
)
#: The same, for what only `processes` entries have.
_PROCESS_TABLE = (
    ("autostart", "autostart", "boolean", ()),
    ("startSeconds", "start_seconds", "seconds", ()),
    ("successCodes", "success_codes", "codes", ()),
    ("priority", "priority", "number", (0, True)),
    ("memoryLimit", "memory_limit", "bytes", ()),
)
_BACKOFF_TABLE = (
    ("initial", "backoff_initial", "seconds", ()),
    ("max", "backoff_max", "seconds", ()),
    ("factor", "backoff_factor", "number", (1, False, 1000)),
    ("resetAfter", "backoff_reset", "seconds", ()),
    ("limit", "restart_limit", "number", (0, True), None),
)
_PROBE_TABLE = (        # Kubernetes' minimums; thresholds are whole numbers
    ("initialDelaySeconds", "initial_delay", "number", (0,)),
    ("periodSeconds", "period", "number", (0.01,)),
    ("timeoutSeconds", "timeout", "number", (0.01,)),
    ("successThreshold", "success_threshold", "number", (1, True)),
    ("failureThreshold", "failure_threshold", "number", (1, True)),
)


def _apply_fields(fields, where, target, table, checker):
    """Set `target`'s attributes from the fields a table names (see _ENTRY_TABLE)."""
    for row in table:
        field, attribute, kind, args = row[:4]
        if field not in fields or (len(row) > 4 and fields[field] is row[4]):
            continue
        value = getattr(checker, kind)(fields[field], "%s.%s" % (where, field), *args)
        setattr(target, attribute, value)


def _build_depends_on(value, where, checker):
    """(names, {name: condition}, {name: place}) from dependsOn: names, or
    Docker Compose's {name, condition} objects; a bare name waits for Ready."""
    if not isinstance(value, list):
        return checker.fail(where, "expected a list of names or {name, condition}, got %s"
                            % _type_name(value)), {}, {}
    names, conditions, places = [], {}, {}
    for index, item in enumerate(value):
        place = "%s[%d]" % (where, index)
        condition = "Ready"
        if isinstance(item, dict):
            item = checker.fields(item, place, ("name", "condition"), required=("name",))
            if "condition" in item:
                condition = checker.choice(item["condition"], place + ".condition",
                                           DEPENDENCY_CONDITIONS)
            item = item.get("name")
            if item is None:
                continue
        name = checker.string(item, place)
        if name is not _INVALID and condition is not _INVALID:
            names.append(name)
            conditions[name], places[name] = condition, place
    return tuple(names), conditions, places


def _check_dependencies(specs, skipped, names, checker):
    """dependsOn names must exist and form no cycle; skipped ones are dropped;
    a Succeeded condition needs a dependency that ends."""
    by_name = dict((spec.name, spec) for spec in specs if isinstance(spec.name, str))
    for spec in specs:
        if spec.depends_on is _INVALID:
            spec.depends_on = ()        # reported already; walk on without it
            continue
        kept = []
        for name in spec.depends_on:
            if name in skipped:
                continue
            if name not in by_name:
                known = _did_you_mean(name, by_name) or "; known: " + ", ".join(sorted(by_name))
                checker.fail(spec.depends_places[name], "no process named %r%s" % (name, known))
                continue
            kept.append(name)
            if spec.conditions.get(name) == "Succeeded" and by_name[name].restart == "Always":
                checker.fail(spec.depends_places[name] + ".condition",
                             "Succeeded waits for %s to end, and its restartPolicy Always "
                             "restarts it; give it OnFailure or Never" % name)
        spec.depends_on = tuple(kept)
    # Depth-first search for a cycle, reported once, at the first entry in it.
    # Iterative: a chain of a thousand entries must not exhaust the stack.
    state = {}
    for root in specs:
        if root.name in state or not isinstance(root.name, str):
            continue
        state[root.name] = "open"
        path, stack = [root.name], [iter(root.depends_on)]
        while stack:
            name = next(stack[-1], None)
            if name is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(name) == "open":
                cycle = path[path.index(name):] + [name]
                checker.fail(by_name[cycle[0]].where + ".dependsOn",
                             "dependency cycle %s; remove one of them" % " -> ".join(cycle))
            elif name not in state:
                state[name] = "open"
                path.append(name)
                stack.append(iter(by_name[name].depends_on))


# -- procwrap convert: a supervisord.conf as a procwrap config (SPECS.md 12.8)

#: [program:x] options read by _supervisord_program; any other is a note.
_SUPERVISORD_MAPPED = (
    "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
    "autorestart", "startsecs", "startretries", "exitcodes", "stopsignal", "stopwaitsecs",
    "stopasgroup", "killasgroup", "user", "directory", "environment", "redirect_stderr",
    "stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups", "stderr_logfile",
    "stderr_logfile_maxbytes", "stderr_logfile_backups")
#: What is said of an option or section that has no procwrap equivalent.
_SUPERVISORD_WHY = {
    "umask": "procwrap has no umask field; start the command with sh -c 'umask 022; exec ...'",
    "serverurl": "procwrap speaks no XML-RPC; children reach it through the ctl socket",
    "stdout_syslog": "procwrap writes records to its stdout; send them to syslog from there",
    "stderr_syslog": "procwrap writes records to its stdout; send them to syslog from there",
    "stdout_capture_maxbytes": "procwrap has no capture mode (it serves event listeners)",
    "stderr_capture_maxbytes": "procwrap has no capture mode (it serves event listeners)",
    "stdout_events_enabled": "procwrap has no event listeners; its records say every change",
    "stderr_events_enabled": "procwrap has no event listeners; its records say every change",
}
_SUPERVISORD_SECTIONS = {
    "supervisorctl": "procwrap ctl needs no section: it reads ctlSocket (procwrap ctl -c FILE)",
    "inet_http_server": "procwrap serves /liveness, /readiness, /metrics and /status, not "
                        "XML-RPC: set http: PORT for those",
    "group": "procwrap has no groups (SUPERVISOR_GROUP_NAME stays in each environment); "
             "procwrap ctl takes * patterns (procwrap ctl stop 'web_*')",
    "eventlistener": "procwrap has no event listeners; its records say every change",
    "fcgi-program": "procwrap does not hold FastCGI sockets for its children",
    "rpcinterface": "procwrap speaks no XML-RPC",
}
_SUPERVISORD_TRUE = ("yes", "true", "on", "1")
_SUPERVISORD_FALSE = ("no", "false", "off", "0")


def _supervisord_config(path, environ):
    """(config, notes) from a supervisord.conf and its [include] files: the
    procwrap config that runs the same programs the same way, and a line for
    each option or section it cannot carry over, with why.  ConfigError for
    what supervisord itself would refuse."""
    import configparser
    import glob
    import socket
    files = [path]
    sections = []           #: (file, name, {option: value}), in the order supervisord reads
    for index, name in enumerate(files):
        parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
        try:
            text = _read_file(name).decode("utf-8")
            parser.read_string(text, name)
        except (OSError, ValueError) as error:
            raise ConfigError("%s: cannot read %r: %s; fix the path" % (
                "convert" if index == 0 else path, name, _read_error(error)))
        except configparser.Error as error:
            raise ConfigError("%s: %s; fix the ini syntax" % (name, str(error).splitlines()[0]))
        for section in parser.sections():
            options = dict(parser.items(section))
            if section == "include" and index == 0:     # supervisord: no nested includes
                here = os.path.dirname(os.path.abspath(name))
                for pattern in options.get("files", "").split():
                    found = sorted(glob.glob(os.path.join(here, pattern)))
                    files.extend(found)
            else:
                sections.append((name, section, options))
    names = {"host_node_name": socket.gethostname()}
    names.update(("ENV_" + key, value) for key, value in environ.items())
    config, notes, shared_env = {"processes": []}, [], {}
    programs, groups = [], {}       #: [(where, program, here, options)]; program -> group
    for name, section, options in sections:
        if section.startswith("group:"):
            for program in options.get("programs", "").split(","):
                groups[program.strip()] = section[len("group:"):]
    for name, section, options in sections:
        here = os.path.dirname(os.path.abspath(name))
        kind, _, program = section.partition(":")
        where = "%s [%s]" % (name, section)
        if kind == "program" and program:
            programs.append((where, program, here, options))
        elif kind == "supervisord":
            for option, value in sorted(options.items()):
                if option == "environment":
                    shared_env = _supervisord_env(
                        _supervisord_expand(value, dict(names, here=here), where, option),
                        where)
                else:
                    notes.append("%s %s: procwrap has no such setting; %s" % (
                        where, option, "it stays in the foreground" if option == "nodaemon"
                        else "its own records go to its stdout" if option.startswith("log")
                        else "run procwrap as that user" if option == "user"
                        else "set it where procwrap starts"))
        elif kind == "unix_http_server":
            for option, value in sorted(options.items()):
                if option == "file":
                    config["ctlSocket"] = _supervisord_expand(value, dict(names, here=here),
                                                              where, option)
                else:
                    notes.append("%s %s: procwrap's ctl socket is created 0600, for its own "
                                 "user only" % (where, option))
        else:
            notes.append("%s: not carried over; %s" % (where, _SUPERVISORD_SECTIONS.get(
                kind, "procwrap does not know this section")))
    config["processes"] = config.pop("processes")     # after the top-level settings
    for where, program, here, options in programs:
        config["processes"].extend(_supervisord_program(
            where, program, groups.get(program, program), here, options, names, shared_env,
            notes))
    if not config["processes"]:
        raise ConfigError("%s: no [program:x] section; nothing to convert" % path)
    seen = {}
    for entry in config["processes"]:
        if entry["name"] in seen:
            raise ConfigError("%s: two processes are named %r (%s); give process_name "
                              "%%(process_num)s" % (path, entry["name"], seen[entry["name"]]))
        seen[entry["name"]] = True
    return config, notes


def _supervisord_program(where, program, group, here, options, names, shared_env, notes):
    """The entries of one [program:x] (numprocs of them), in supervisord's meaning."""
    def flag(option, default):
        value = options.get(option)
        if value is None:
            return default
        if value.strip().lower() in _SUPERVISORD_TRUE + _SUPERVISORD_FALSE:
            return value.strip().lower() in _SUPERVISORD_TRUE
        raise ConfigError("%s %s: %r is not a boolean; write true or false"
                          % (where, option, value))

    def number(option, default):
        value = options.get(option, default)
        if not _is_digits(str(value).strip()):
            raise ConfigError("%s %s: %r is not a whole number" % (where, option, value))
        return int(value)
    if "command" not in options:
        raise ConfigError("%s: command is missing; supervisord requires it" % where)
    for option in sorted(options):
        if option not in _SUPERVISORD_MAPPED:
            notes.append("%s %s: not carried over; %s" % (where, option, _SUPERVISORD_WHY.get(
                option.replace("_logfile_maxbytes", "_logfile").replace(
                    "_logfile_backups", "_logfile"), "procwrap does not know this option")))
    count, first = number("numprocs", 1), number("numprocs_start", 0)
    process_name = options.get("process_name", "%(program_name)s")
    if count > 1 and "%(process_num)" not in process_name:
        raise ConfigError("%s process_name: with numprocs, it must contain %%(process_num)s, "
                          "as supervisord requires" % where)
    autorestart = options.get("autorestart", "unexpected").strip().lower()
    if autorestart not in ("unexpected",) + _SUPERVISORD_TRUE + _SUPERVISORD_FALSE:
        raise ConfigError("%s autorestart: %r; write true, false or unexpected"
                          % (where, autorestart))
    stopasgroup = flag("stopasgroup", False)
    if flag("killasgroup", stopasgroup) is False or stopasgroup is False:
        notes.append("%s stopasgroup/killasgroup: procwrap signals the whole process group "
                     "(as stopasgroup=true)" % where)
    entries = []
    for process_num in range(first, first + count):
        values = dict(names, program_name=program, group_name=group, here=here,
                      numprocs=count, process_num=process_num)

        def expand(option):
            return _supervisord_expand(options[option], values, where, option)
        name = _supervisord_expand(process_name, values, where, "process_name")
        env = dict(shared_env)
        env.update(SUPERVISOR_ENABLED="1", SUPERVISOR_PROCESS_NAME=name,
                   SUPERVISOR_GROUP_NAME=group)
        if "environment" in options:
            own = _supervisord_env(expand("environment"), where)
            env.update(own)
            values.update(("ENV_" + key, value) for key, value in own.items())
        import shlex
        try:
            command = shlex.split(expand("command"))
        except ValueError as error:
            raise ConfigError("%s command: cannot split it: %s" % (where, error))
        if not command:
            raise ConfigError("%s command: is empty" % where)
        entry = {"name": name, "command": [_k8s_escape(word) for word in command],
                 "env": dict((key, _k8s_escape(value)) for key, value in sorted(env.items()))}
        if "directory" in options:
            entry["workingDir"] = expand("directory")
        if "user" in options:
            entry["user"] = expand("user")
        entry["restartPolicy"] = {"unexpected": "OnFailure"}.get(
            autorestart, "Always" if autorestart in _SUPERVISORD_TRUE else "Never")
        codes = options.get("exitcodes", "0")
        try:
            codes = [int(code) for code in codes.split(",")]
        except ValueError:
            raise ConfigError("%s exitcodes: %r; write codes separated by commas"
                              % (where, codes))
        if codes != [0]:
            entry["successCodes"] = codes
        startsecs = number("startsecs", 1)
        if startsecs:
            entry["startSeconds"] = startsecs
        # startretries counts failed starts; with startsecs=0 no start fails.
        entry["backoff"] = {"limit": number("startretries", 3) if startsecs else None}
        if "priority" in options:
            entry["priority"] = number("priority", 999)
        if not flag("autostart", True):
            entry["autostart"] = False
        if "stopsignal" in options:
            entry["stopSignal"] = expand("stopsignal").upper().replace("SIG", "", 1) \
                if not _is_digits(options["stopsignal"]) else int(options["stopsignal"])
        if "stopwaitsecs" in options:
            entry["stopTimeout"] = number("stopwaitsecs", 10)
        if flag("redirect_stderr", False):
            entry["mergeStderr"] = True
        logs = _supervisord_logs(where, options, values, notes if process_num == first else [])
        if logs and count > 1 and "%(process_num)" not in options.get(
                "stdout_logfile", options.get("stderr_logfile", "")):
            root, extension = os.path.splitext(logs["file"])
            logs["file"] = "%s_%d%s" % (root, process_num, extension)
            if process_num == first:
                notes.append("%s stdout_logfile: one file for %d processes; procwrap gives "
                             "each its own, %s" % (where, count, logs["file"]))
        if logs:
            entry["logs"] = logs
        entries.append(entry)
    return entries


def _supervisord_logs(where, options, values, notes):
    """logs.file and its rotation from stdout_logfile* (or stderr_logfile*):
    procwrap writes one file a process, each record naming its stream."""
    files = {}
    for stream in ("stdout", "stderr"):
        option = stream + "_logfile"
        value = options.get(option)
        if value is None:
            continue
        path = _supervisord_expand(value, values, where, option)
        if path.upper() == "NONE":
            continue
        if path.upper() == "AUTO":
            notes.append("%s %s: AUTO, a file in childlogdir; procwrap writes a file when given "
                         "its path (logs.file, or the top-level logs.directory)" % (where, option))
        elif path in ("/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2", "/proc/self/fd/1",
                      "/proc/self/fd/2"):
            notes.append("%s %s: %s: procwrap's records of it go to its stdout already"
                         % (where, option, path))
        elif stream == "stderr" and options.get("redirect_stderr", "").lower() in \
                _SUPERVISORD_TRUE:
            notes.append("%s %s: ignored with redirect_stderr, as supervisord ignores it"
                         % (where, option))
        else:
            files[stream] = path
    if not files:
        return None
    stream = "stdout" if "stdout" in files else "stderr"
    if files.get("stderr") not in (None, files.get("stdout")) and "stdout" in files:
        notes.append("%s stderr_logfile: procwrap writes one file a process, each record "
                     "naming its stream: stderr goes to %s too" % (where, files["stdout"]))
    elif stream == "stderr":
        notes.append("%s stderr_logfile: procwrap writes one file a process: its stdout goes "
                     "to %s too" % (where, files["stderr"]))
    logs = {"file": files[stream]}
    for option, field in (("_logfile_maxbytes", "maxBytes"), ("_logfile_backups", "backups")):
        if stream + option in options:
            value = options[stream + option].strip()
            try:
                logs[field] = int(value) if _is_digits(value) else value
                if field == "maxBytes":
                    _value_bytes(logs[field])
            except _BadValue:
                raise ConfigError("%s %s: %r is not a size; write 50MB, 1GB or bytes"
                                  % (where, stream + option, value))
    return logs


def _supervisord_expand(value, names, where, option):
    """supervisord's %(name)s expansion (Python % formatting; %% is %)."""
    try:
        return value % names
    except KeyError as error:
        raise ConfigError("%s %s: %%(%s)s names nothing supervisord would know; known: "
                          "ENV_*, here, program_name, process_num, group_name, numprocs, "
                          "host_node_name" % (where, option, error.args[0]))
    except (ValueError, TypeError) as error:
        raise ConfigError("%s %s: %s; write %%%% for a %%" % (where, option, error))


def _supervisord_env(text, where):
    """environment=KEY="value",KEY2=value2 as supervisord reads it: words of
    a shlex lexer (quotes keep commas), KEY = VALUE triples, comma-separated."""
    import shlex
    lexer = shlex.shlex(text)
    lexer.wordchars += "/.+-():"
    try:
        tokens = list(lexer)
    except ValueError as error:
        raise ConfigError("%s environment: %s; close the quote" % (where, error))
    env = {}
    for index in range(0, len(tokens), 4):
        triple = tokens[index:index + 3]
        if len(triple) != 3 or triple[1] != "=" or tokens[index + 3:index + 4] not in ([], [","]):
            raise ConfigError("%s environment: expected KEY=value pairs separated by commas"
                              % where)
        env[triple[0]] = triple[2].strip("'\"")
    return env


def _k8s_escape(text):
    """A literal for procwrap: $(NAME) and $$ would be expanded, so $ is doubled."""
    return text.replace("$", "$$") if _K8S_VAR_RE.search(text) else text


def _yaml_text(value, indent=""):
    """`value` (dicts, lists, strings, numbers, booleans, None) as block YAML;
    every string double-quoted the JSON way, which YAML reads the same."""
    import json

    def block(item):        # written on lines of its own, not after its key
        return isinstance(item, dict) and item or isinstance(item, list) and any(
            isinstance(inner, (dict, list)) for inner in item)
    if not block(value):
        return json.dumps(value, separators=(", ", ": "))      # a scalar, or [a, b]
    lines = []
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        text = _yaml_text(item, indent + "  ")
        if isinstance(value, list):
            lines.append("%s- %s\n" % (indent, text[len(indent) + 2:].rstrip("\n")
                                       if block(item) else text))
        else:
            key = key if _YAML_KEY_RE.match(key) else json.dumps(key)
            lines.append("%s%s:%s\n" % (indent, key, "\n" + text.rstrip("\n") if block(item)
                                        else " " + text))
    return "".join(lines)


_YAML_KEY_RE = _Pattern(r"^[A-Za-z_][A-Za-z0-9_]*$")


# =============================================================================
# Supervisor
# Many processes: init entries one after another, then `processes` kept
# alive; essential processes, dependsOn, signals, and an orderly shutdown.
# Health is asked, not kept here; the control surface is a view from outside.
# =============================================================================


def _any_in(processes, states):
    """Is any of `processes` in one of `states`?"""
    for process in processes:
        if process.state in states:
            return True
    return False


class _OneShots(object):
    """Entries run one after another, each to its end: `init` entries before
    the processes, top-level `postStart` entries once every process is first
    ready, `finish` entries once every process has stopped.  The next starts
    when one exits 0; one that fails ends the run with its status (finish
    entries, `at_end`: the next starts anyway, as s6 runs each finish script)."""
    index = None            #: the next entry to start, once begun

    def __init__(self, supervisor, specs, kind, failed_event, failed_note="", on_done=None,
                 at_end=False):
        self.at_end = at_end            #: run while shutting down; a failure is only said
        self.supervisor = supervisor
        self.kind = kind                #: 'init entry', 'postStart entry': for messages
        self.failed_event = failed_event    #: the record's event when one fails
        self.failed_note = failed_note  #: said after a failure ('; not starting processes')
        self.on_done = on_done          #: func() once every entry exited 0
        self.processes = [_Process(spec, supervisor.loop, supervisor.log, self.on_change,
                                   supervisor.max_line, supervisor.child_class(spec))
                          for spec in specs]

    def begin(self):
        """Start the first entry."""
        self.index = 0
        self.next()

    def next(self):
        """Start the next entry, or say all are done."""
        supervisor = self.supervisor
        if supervisor.shutting_down and not self.at_end:
            return supervisor.check_done()
        if self.index < len(self.processes):
            self.index += 1
            self.processes[self.index - 1].start()
        elif self.on_done is not None:
            self.on_done()

    def on_change(self, process, old):
        """An entry changed state: start the next, or end the run if it failed."""
        supervisor = self.supervisor
        supervisor.track(process, old)
        if process.state == _State.EXITED and (self.at_end or not supervisor.shutting_down):
            if process.status != 0:
                supervisor.log.event("%s %s failed (%s)%s" % (
                    self.kind, process.name, process.description, self.failed_note), "error",
                    event=self.failed_event, name=process.name, status=process.status)
                if not self.at_end:
                    supervisor.shutdown("%s %s failed" % (self.kind, process.name),
                                        process.status)
                    return
            self.next()
        supervisor.check_done()

    def pending(self):
        """Begun (or not) and not over: an entry is still to start, or runs."""
        return (self.index or 0) < len(self.processes) or _any_in(self.processes, _State.ALIVE)


class _Supervisor(_Owner):
    """Runs a config: init entries in order, then processes, until shutdown.

    Exit status (see the module docstring): 0 after a signal-initiated
    shutdown or when everything finished well; an essential process's
    status; a failed init entry's status; else the last failure's status.
    """
    last_failure = None     #: status of the last failed exit
    shutting_down = False
    preempted = False       #: the node is going away (--preemption-url): never ready again
    reload_config = None    #: func() -> (init, processes, settings), for reload()
    api = None              #: the reporting settings, when runs are reported (report())
    labels = {}             #: extra labels of every record and metric (--labels and kin)

    def __init__(self, init, processes, log, max_line=MAX_LINE_BYTES,
                 kill_on_second_signal=False, loop=None, health=None, post_start=(),
                 signal_map=None, finish=(), finish_timeout=FINISH_TIMEOUT):
        _Owner.__init__(self, log, loop, signal_map, kill_on_second_signal, max_line)
        if log.format == "text":        # names padded to the longest, procwrap's included
            log.width = max([len(_text_name(spec.name, spec.labels, log.labels))
                             for spec in init + processes + list(post_start) + list(finish)]
                            + [len("procwrap")])
        self.hosts = {}                         #: _Remote.key() -> its _Host (one link each)
        self.init = _OneShots(self, init, "init entry", "init-failed",
                              "; not starting processes", self._start_processes)
        self.processes = [_Process(s, self.loop, log, self.on_change, max_line,
                                   self.child_class(s)) for s in processes]
        #: one-shots run in order once every process is first ready
        self.post_start = _OneShots(self, post_start, "postStart entry", "post-start-failed")
        #: one-shots run in order once everything has stopped, within finish_timeout
        self.finish = _OneShots(self, finish, "finish entry", "finish-failed", at_end=True)
        self.finish_timeout = finish_timeout
        self._finish_timer = None
        self._ended = False                     #: every process ended by itself (said once)
        self.by_name = dict((p.name, p) for p in self.processes)
        log.redact.make_public(p.name for p in self.everything())
        self.dependents = dict((p.name, []) for p in self.processes)   #: name -> [Process]
        for process in self.processes:
            for name in process.spec.depends_on:
                self.dependents[name].append(process)
        self._waiting = set()                   #: processes in State.WAITING
        self._alive = 0                         #: processes in State.ALIVE, kept by track
        self._health_timer = None               #: a pending _evaluate_health
        self._replacing = {}                    #: name -> new spec (None: remove) when stopped
        self._restarting = set()                #: names to start again once stopped (ctl)
        self.watchers = []                      #: func() after each look at health
        self.started = time.time()              #: for uptime and /metrics
        #: probes, hooks, heartbeats, sd_notify and the readiness file
        self.health = _Health(self.loop, log, health or {}, self.processes,
                              self._health_changed)
        self.reports = {}                       #: name -> _ApiReporter of its current run
        self._finishing = 0                     #: final updates not yet done
        self.locks = {}                         #: name -> its _Semaphore (fleet())
        self.make_semaphore = None              #: func(spec) -> _Semaphore, once fleet() ran
        self._memory_timer = None               #: the next look at memoryLimits, if any

    # -- reporting each run of a process with a taskName to the API server
    def report(self, api):
        """Report the runs of the processes that name a task (taskName,
        taskUuid): an execution per run, created before it starts."""
        self.api = api
        self.health.on_update = self._status_update
        for process in self.processes:
            self._gate(process)

    def _gate(self, process):
        """What must say yes before each run: its lock's slot, then the API server."""
        steps = []
        if process.name in self.locks:
            steps.append(self._lock_start)
        if self.api is not None and (process.spec.task_name or process.spec.task_uuid):
            steps.append(self._report_start)
        if not steps:
            process.gate = None
            return

        def gate(process, go):
            def step(index, refused=None):
                if refused is not None or index == len(steps):
                    return go(refused)
                steps[index](process, lambda refused: step(index + 1, refused))
            step(0)
        process.gate = gate

    # -- the processes that hold a lock across machines (singleton, maxConcurrency)
    def fleet(self, make_semaphore):
        """Give each process that names a lock its _Semaphore
        (make_semaphore(spec)); it runs only while holding a slot, keeps the
        slot across restarts, waits again after losing it."""
        self.make_semaphore = make_semaphore
        for process in self.processes:
            self._add_lock(process)

    def _add_lock(self, process):
        if self.make_semaphore is None or not process.spec.lock_name:
            return
        semaphore = self.make_semaphore(process.spec)
        semaphore.on_lost = lambda reason: self._lock_lost(process, reason)
        self.locks[process.name] = semaphore
        self._gate(process)

    def _lock_start(self, process, go):
        """A run of a process with a lock: its slot first (kept across runs)."""
        semaphore = self.locks[process.name]
        if semaphore.held:
            return go(None)
        semaphore.acquire(None, go)

    def _lock_lost(self, process, reason):
        """The slot is no longer ours: stop the process, then wait for a slot."""
        self.log.event("%s: %s; stopping it until a slot is ours again" % (process.name, reason),
                       "warning", event="lock-lost", name=process.name)
        if process.state in _State.ALIVE:
            self._restarting.add(process.name)
            process.stop()

    def _lock_done(self, process):
        """It ended for good: its slot goes back (in the worker)."""
        semaphore = self.locks.get(process.name)
        if semaphore is not None and semaphore.lease is not None \
                and process.name not in self._restarting:
            semaphore.release()

    def _report_start(self, process, go):
        """A run of a reported process: the execution first, then go()."""
        import socket
        spec = process.spec
        options = dict(self.api, task_name=spec.task_name, task_uuid=spec.task_uuid,
                       task_execution_uuid=None, timeout=spec.timeout,
                       retries=spec.restart_limit, stop_timeout=spec.stop_timeout)
        reporter = _ApiReporter(self.loop, self.log, options, spec.argv, hostname=(
            socket.gethostname() if options["send_hostname"] else None),
            pid=os.getpid() if options["send_pid"] else None, name=process.name)
        reporter.log_status = False             # the health logs what it said
        reporter.on_stopped = lambda reason: self._stopped_by_server(process, reason)
        self.reports[process.name] = reporter

        def started(refused):
            if refused is not None:
                self.reports.pop(process.name, None)
            elif process.hold and process.state == _State.STOPPED:     # stopped meanwhile
                self.reports.pop(process.name, None)
                self._finishing += 1
                reporter.finish(API_ABORTED, None, None, self._reported)
            go(refused)
        reporter.start(started)

    def _status_update(self, process, message):
        reporter = self.reports.get(process.name)
        if reporter is not None:
            reporter.status_update(message)

    def _stopped_by_server(self, process, reason):
        """The server stopped this run: the process stops, and stays stopped."""
        self.log.event("%s: %s; stopping it" % (process.name, reason), "warning",
                       event="api-stopped", name=process.name)
        self.reports[process.name].aborted = True
        process.stop()

    def _report_end(self, process):
        """A reported run ended: its final update (the run is over only once
        every final update is done: check_done waits)."""
        reporter = self.reports.pop(process.name)
        outcome, tail = _run_outcome(process, reporter.aborted or self.shutting_down,
                                     reporter.options["api_log_lines"], self.log.redact)
        self._finishing += 1
        reporter.finish(outcome, process.status, tail, self._reported)

    def _reported(self):
        self._finishing -= 1
        self.check_done()

    def everything(self):
        """Every process: init entries, processes, postStart and finish entries."""
        return (self.init.processes + self.processes + self.post_start.processes
                + self.finish.processes)

    # -- running
    def begin(self):
        """Say what runs, then the first init entry."""
        if not _become_subreaper():
            self.log.event(NO_SUBREAPER_MSG, "warning", event="degraded")
        self.log.event("procwrap %s supervising %s and %s (pid %d)"
                       % (__version__, _plural(len(self.init.processes), "init entry"),
                          _plural(len(self.processes), "process"), os.getpid()),
                       event="starting", pid=os.getpid())
        self.init.begin()
        self._watch_memory()
        _trim_memory()

    def end(self):
        """No child left, no readiness file, no socket, no slot held; every
        log file written out and closed."""
        self._sweep()
        self.health.close()
        for process in self.everything():
            if process.log_file is not None:
                process.log_file.end()
        for semaphore in self.locks.values():
            semaphore.release_now()

    def result(self):
        """The exit status, said in the last record."""
        status = _Owner.result(self)
        self.log.event("procwrap exiting with status %d" % status, event="exit", status=status)
        return status

    def track(self, process, old):
        """Keep the count of alive processes, so each change costs O(1), not O(n)."""
        self._alive += (process.state in _State.ALIVE) - (old in _State.ALIVE)

    # -- memoryLimit: the RSS of each limited process's group, once a MEMORY_CHECK
    def _watch_memory(self):
        """Look at memory every MEMORY_CHECK seconds while a process has a limit
        (one timer for all; no timer, no wake-up, without limits)."""
        if self._memory_timer is None and not self.shutting_down and any(
                p.spec.memory_limit for p in self.processes):
            self._memory_timer = self.loop.call_later(MEMORY_CHECK, self._check_memory)

    def _check_memory(self):
        """One pass over /proc for every limited group; a group over its
        limit has its process stopped (preStop, stop signal, grace, SIGKILL)
        and its restartPolicy decides."""
        self._memory_timer = None
        limited = [p for p in self.processes if p.spec.memory_limit and p.pgid is not None
                   and p.state in (_State.STARTING, _State.RUNNING)]
        usage = _group_rss(set(p.pgid for p in limited)) if limited else {}
        for process in limited:
            rss = usage.get(process.pgid, 0)
            if rss > process.spec.memory_limit:
                process.memory_kills += 1
                process.terminate("its process group's resident memory, %s, is over its "
                                  "memoryLimit, %s" % (_format_bytes(rss), _format_bytes(
                                      process.spec.memory_limit)), event="memory-limit")
        self._watch_memory()

    def _start_processes(self):
        """Init is done: every process waits, then those free to go start."""
        if not self.processes:
            self.loop.stopped = True
            return
        for process in self.processes:
            if process.spec.autostart:
                process.wait()

    def _try_start(self, process):
        """WAITING -> STARTING once each dependency meets its condition: Ready
        (the default: ready, as /readiness counts it), Started (running) or
        Succeeded; one that finished well for good meets all three.  WAITING
        -> FATAL when one ended badly for good: it never will."""
        for name in process.spec.depends_on:
            other = self.by_name[name]
            finished_well = (other.state == _State.EXITED
                             and other.status in other.spec.success_codes)
            if other.state in _State.DONE and not finished_well:
                self.log.event("%s: not starting, its dependency %s %s" % (
                    process.name, name, other.description or "gave up"), "error",
                    event="fatal", name=process.name)
                process.status, process.description = other.status, other.description
                process.give_up()
                return
            condition = process.spec.conditions.get(name, "Ready")
            met = finished_well or (
                condition == "Started" and other.state == _State.RUNNING
                or condition == "Ready" and self.health.is_ready(other))
            if not met:
                return
        process.start()

    def on_change(self, process, old):
        """A process changed state: start dependents, end the run, or go on stopping."""
        self.track(process, old)
        state = process.state
        if old in _State.ALIVE and state not in _State.ALIVE and process.name in self.reports:
            self._report_end(process)
        if (state in _State.DONE or state == _State.STOPPED) and process.name in self.locks:
            self._lock_done(process)
        if state not in _State.ALIVE and not self.shutting_down:
            if process.name in self._replacing and self.by_name.get(process.name) is process:
                return self._replace(process, self._replacing.pop(process.name))
            if state == _State.STOPPED and process.name in self._restarting:
                self._restarting.discard(process.name)
                process.start(manual=True)
                return
        if state == _State.RUNNING:
            self.health.started(process)
        elif old == _State.RUNNING:
            self.health.stopped(process)
        if state == _State.WAITING:
            self._waiting.add(process)
        else:
            self._waiting.discard(process)
        # Dependents are looked at once this loop pass is over (in
        # _evaluate_health), when its states have settled: a dependency that
        # exec'd and failed within the pass never looks started.
        self._health_changed()
        if state in _State.DONE:
            if process.status not in process.spec.success_codes:
                self.last_failure = process.status
            elif state == _State.FATAL and process.early:   # ended 0, but too soon
                self.last_failure = self.last_failure or 1
            if process.spec.essential and not self.shutting_down:
                self.shutdown("essential process %s %s" % (
                    process.name, "gave up" if state == _State.FATAL else "ended"),
                    process.status)
                return
        if self.shutting_down and state not in _State.ALIVE:
            # What it depended on, or what has a lower priority, may be free to stop now.
            for name in process.spec.depends_on:
                self._stop_if_free(self.by_name[name])
            if process.spec.priority is not None:
                for other in self.processes:
                    if other.spec.priority is not None \
                            and other.spec.priority < process.spec.priority:
                        self._stop_if_free(other)
        self.check_done()

    def check_done(self):
        """Stop the loop once nothing is alive (shutting down) or nothing more will run."""
        if self._finishing:
            return              # a final update to the API server is on its way
        if self.shutting_down:
            if not self._alive and self._finished():
                self.loop.stopped = True
            return
        if self.init.pending() or _any_in(self.post_start.processes, _State.ALIVE):
            return
        if all(p.state in _State.DONE for p in self.processes) and not self.loop.stopped:
            if self.exit_status is None:
                self.exit_status = self.last_failure or 0
            if not self._ended:
                self._ended = True
                self.log.event("every process has ended", event="all-ended")
            if self._finished():
                self.loop.stopped = True

    def _finished(self):
        """The finish entries, begun once everything else has stopped: True
        once they are over (or there are none)."""
        finish = self.finish
        if not finish.processes:
            return True
        if finish.index is None:
            self.log.event("running %s (%s s at most)" % (_plural(
                len(finish.processes), "finish entry"), _format_seconds(self.finish_timeout)),
                event="finishing")
            self._finish_timer = self.loop.call_later(self.finish_timeout, self._finish_late)
            finish.begin()
        if finish.pending():
            return False
        if self._finish_timer is not None:
            self._finish_timer.cancel()
            self._finish_timer = None
        return True

    def _finish_late(self):
        """finishTimeout is over: what runs is killed, what is left is not started."""
        self._finish_timer = None
        finish = self.finish
        left = [p.name for p in finish.processes[finish.index:]]
        self.log.event("finish entries still running after %s s; killing %s%s" % (
            _format_seconds(self.finish_timeout), ", ".join(
                p.name for p in finish.processes if p.state in _State.ALIVE) or "none",
            "; not starting " + ", ".join(left) if left else ""), "warning",
            event="finish-timeout")
        finish.index = len(finish.processes)
        for process in finish.processes:
            if process.state in _State.ALIVE:
                process.kill("finishTimeout")
        self.check_done()

    # -- health of the whole
    def preempt(self):
        """The node is going away: not ready from now on, whatever the processes say."""
        self.preempted = True
        self._health_changed()

    def _health_changed(self):
        """Readiness of the whole may have changed: look once this loop pass is
        done, so 500 processes starting together cost one look, not 500."""
        if self._health_timer is None:
            self._health_timer = self.loop.call_later(0, self._evaluate_health)

    def _evaluate_health(self):
        """Dependents free to start; readiness of the whole (reported by
        health); postStart entries once first ready; then the watchers."""
        self._health_timer = None
        if self._waiting and not self.shutting_down:
            for process in self._by_priority(p for p in self.processes if p in self._waiting):
                if process.state == _State.WAITING:
                    self._try_start(process)
        is_ready = self.health.is_ready
        ready = (not self.shutting_down and not self.preempted and not self.init.pending()
                 and all(is_ready(p) for p in self.processes))
        if ready != self.health.ready:
            count = sum(1 for p in self.processes if is_ready(p))
            self.health.report_ready(ready, count, len(self.processes), "shutting down"
                                     if self.shutting_down else "the node is being preempted"
                                     if self.preempted else None)
            if ready and self.post_start.index is None:
                self.post_start.begin()
        for watcher in self.watchers:
            watcher()

    # -- reload
    def reload(self):
        """Read the config again: start what was added, stop what was removed,
        restart what changed (init entries do not run again; health settings stay)."""
        try:
            init, processes, settings = self.reload_config()
        except ProcwrapError as error:
            return {"ok": False, "error": "reload: %s" % error}
        new = dict((spec.name, spec) for spec in processes)
        added = [name for name in new if name not in self.by_name]
        removed = [p.name for p in self.processes if p.name not in new]
        changed = [p.name for p in self.processes
                   if p.name in new and new[p.name].fingerprint != p.spec.fingerprint]
        for name in removed + changed:
            process = self.by_name[name]
            self._replacing[name] = new.get(name)
            if process.state in _State.ALIVE or process.state in _State.PENDING:
                process.stop()
            else:
                self._replace(process, self._replacing.pop(name))
        for name in added:
            self._add(new[name])
        self.log.event("reloaded: %d added, %d removed, %d changed"
                       % (len(added), len(removed), len(changed)), event="reload",
                       added=added, removed=removed, changed=changed)
        return {"ok": True, "added": added, "removed": removed, "changed": changed}

    def child_class(self, spec):
        """How an entry's command runs: here, or on its host, through the one
        link that every entry naming that host (the same way) shares."""
        if spec.remote is None:
            return _LocalChild
        host = self.hosts.get(spec.remote.key())
        if host is None:
            host = self.hosts[spec.remote.key()] = _Host(self.loop, spec.remote)
        return lambda loop, on_exec, on_exit, sinks, line: _RemoteChild(
            host, loop, on_exec, on_exit, sinks, line)

    def restart(self, process):
        """Stop it, then start it (procwrap ctl restart); start it if not alive."""
        if process.state in _State.ALIVE:
            self._restarting.add(process.name)
            process.stop()
        else:
            process.start(manual=True)

    def _add(self, spec):
        """A process new to the config: wire it and start it (after its dependencies)."""
        process = _Process(spec, self.loop, self.log, self.on_change, self.max_line,
                           self.child_class(spec))
        self._gate(process)
        self._add_lock(process)
        self.log.redact.make_public([spec.name])
        self.processes.append(process)
        self.by_name[spec.name] = process
        self.dependents[spec.name] = []
        for name in spec.depends_on:
            if name in self.dependents:
                self.dependents[name].append(process)
        self.health.wire(process)
        self._watch_memory()
        if spec.autostart:
            process.wait()          # started once its dependencies allow

    def _replace(self, process, spec):
        """A removed or changed process has stopped: drop it, and start its new version."""
        if process.log_file is not None:
            process.log_file.end()
        self.processes.remove(process)
        del self.by_name[process.name]
        self.health.unwire(process)
        for dependents in self.dependents.values():
            if process in dependents:
                dependents.remove(process)
        self.dependents.pop(process.name, None)
        if spec is not None:
            self._add(spec)
        self._health_changed()
        self.check_done()

    # -- shutdown
    def shutdown(self, reason, status=None):
        """Stop everything: dependents before what they depend on, each with its own signal.

        `status`, if given, is what procwrap exits with (unless something
        already decided that).
        """
        if status is not None and self.exit_status is None:
            self.exit_status = status
        if self.shutting_down:
            return
        self.shutting_down = True
        self.log.event(SHUTDOWN_MSG % reason, event="shutdown")
        self.health.report_stopping(reason)
        self._health_changed()
        for process in self.everything():
            process.last_attempt()
        self._stop_ready()
        self.check_done()

    def _stop_ready(self):
        """The first pass of a shutdown: stop init, pending processes, and every
        process that nothing alive depends on.  The rest follow from on_change as
        their dependents end (_stop_if_free), one check per change."""
        for process in self.init.processes + self.post_start.processes:
            if process.state in _State.ALIVE:
                process.stop()
        for process in self.processes:
            if process.state in _State.PENDING:
                process.stop()
            else:
                self._stop_if_free(process)

    def _stop_if_free(self, process):
        """Stop `process` if it runs and no process that depends on it, nor
        one of a higher priority, is alive."""
        if process.state in (_State.STARTING, _State.RUNNING) and not _any_in(
                self.dependents[process.name], _State.ALIVE) and not _any_in(
                self._after(process), _State.ALIVE):
            process.stop()

    @staticmethod
    def _by_priority(processes):
        """`processes` in the order they start: by priority (supervisord's
        default, 999, for those without), then as the config lists them."""
        return sorted(processes, key=lambda p: PRIORITY_DEFAULT if p.spec.priority is None
                      else p.spec.priority)

    def _after(self, process):
        """The processes of a higher priority than `process` (started after
        it, so stopped before it); none for a process without one."""
        priority = process.spec.priority
        if priority is None:
            return ()
        return [p for p in self.processes
                if p.spec.priority is not None and p.spec.priority > priority]

    # -- signals
    def on_signal(self, signum):
        """Every signal: TERM, INT and QUIT shut down, TSTP, TTIN and TTOU stop
        everything until CONT, the rest go to every running process."""
        signum = self.router.route(signum)
        if signum is None:
            return
        name = _signal_name(signum)
        if name in STOP_SIGNALS:
            self.on_stop_signal(signum)
        elif name in JOB_CONTROL_SIGNALS:
            self.log.event(SIGNAL_MSG % name + "; stopping every process until SIGCONT",
                           event="signal", signal=name)
            self._signal_alive(signal.SIGSTOP)
            if os.getpid() != 1:        # the kernel ignores SIGSTOP sent to init anyway
                os.kill(os.getpid(), signal.SIGSTOP)
        else:
            # HUP, USR1, USR2, WINCH, ...: passed on to every running process
            # (log reopening and the like).
            self.log.event(SIGNAL_MSG % name + "; forwarding it", event="signal", signal=name)
            self._signal_alive(signum)

    def on_stop_signal(self, signum):
        """TERM, INT or QUIT: shut down; a second one may kill at once."""
        name = _signal_name(signum)
        self.log.event(SIGNAL_MSG % name, event="signal", signal=name)
        if not self.shutting_down:
            self.shutdown("received %s" % name)
        elif self.kill_on_second_signal:
            for process in self.everything():
                if process.state in _State.ALIVE:
                    process.kill("a second %s came" % name)
        else:
            self.log.event(SECOND_SIGNAL_MSG % name, "warning", event="signal")

    def _signal_alive(self, signum):
        """Send signum to every process that is alive."""
        for process in self.everything():
            if process.state in _State.ALIVE:
                process.signal(signum)

    def on_orphan(self, pid, wait_status):
        """An orphaned grandchild was reaped (we are PID 1 or subreaper)."""
        self.log.event(ORPHAN_MSG % (pid, _describe_wait(wait_status)),
                       event="reaped", pid=pid)

    def on_error(self, text):
        """A callback crashed (our bug): print the traceback, log it, carry on."""
        sys.stderr.write(self.log.redact(text))
        self.log.event("internal error, carrying on: %s" % text.strip().splitlines()[-1],
                       "error", event="bug")

    def _sweep(self):
        """Leave no orphan and no zombie (see _sweep_children); each is logged,
        but for the ssh of a link still closing (its commands are over)."""
        links = set(host.link.pid for host in self.hosts.values() if host.link is not None)
        for pid, wait_status in _sweep_children(self.loop):
            if pid not in links:
                self.on_orphan(pid, wait_status)
        self.loop.reap()


# =============================================================================
# Control surface
# The supervisor seen from outside: /liveness, /readiness, /metrics and
# /status over HTTP, and `procwrap ctl` over a Unix socket, its commands in
# one table that the server dispatches on and the client checks against;
# and the outside seen from a pod: preemption and sibling containers,
# watched from threads of their own.
# =============================================================================


_HTTP_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                 500: "Internal Server Error",
                 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class _HttpConnection(_Connection):
    """One HTTP client: read a request head, answer, keep alive or close."""
    head_only = False       #: HEAD: headers only
    close_after = False     #: the request asked to close once it is answered

    def __init__(self, listener, sock):
        import socket
        _Connection.__init__(self, listener, sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_data(self):
        """Parse one request head from the buffer and hand it on."""
        try:
            taken = _take_until(self.buffer, b"\r\n\r\n", HTTP_MAX_REQUEST)
        except _TooLong:
            self.busy = self.closing = True
            self.respond(431, {"error": "request head over %d bytes" % HTTP_MAX_REQUEST})
            return True
        if taken is None:
            return False
        self.busy = True
        head, self.buffer = taken
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.closing = True
            self.respond(400, {"error": "not an HTTP/1 request"})
            return True
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        # Closed once answered (not before: a ?wait answer may come later).
        self.close_after = (connection == "close" if version == "HTTP/1.1"
                            else connection != "keep-alive")
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            self.close_after = True     # we read no bodies, so we cannot find the next request
        self.head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self.respond(405, {"error": "only GET and HEAD"}, headers=[("Allow", "GET, HEAD")])
            return True
        try:
            self.listener.handler(self, target)
        except Exception:
            self.closing = True
            self.respond(500, {"error": "internal error; see procwrap's log"})
            raise                       # the loop reports our bug and carries on
        return True

    def respond(self, status, body, content_type="application/json", headers=()):
        """Send an answer (a dict or list is sent as JSON)."""
        if not isinstance(body, bytes):
            import json
            body = (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()
        self.closing = self.closing or self.close_after
        head = ["HTTP/1.1 %d %s" % (status, _HTTP_REASONS.get(status, "")),
                "Content-Type: " + content_type, "Content-Length: %d" % len(body),
                "Cache-Control: no-store",
                "Connection: " + ("close" if self.closing else "keep-alive")]
        head.extend("%s: %s" % header for header in headers)
        head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        self.busy = False
        self.queue(head if self.head_only else head + body)


class _HttpServer(_Listener):
    """Accepts HTTP connections; handler(connection, target) answers each request."""
    connection_class = _HttpConnection

    def __init__(self, loop, host, port, handler):
        import socket
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(HTTP_BACKLOG)
        self.address = sock.getsockname()[:2]
        _Listener.__init__(self, loop, sock, handler)


class _CtlConnection(_Connection):
    """One `procwrap ctl` client: a request line in; answer lines out; a
    follower (tail -f) stays until it goes away or falls too far behind."""
    following = None        #: the _Ring followed, for tail -f
    stream = None           #: ... only this stream of it, if set

    def on_data(self):
        """The request line, to the supervisor (one per connection: it stays
        busy until closed, and a follower is never idle)."""
        try:
            taken = _take_until(self.buffer, b"\n", CTL_MAX_REQUEST)
        except _TooLong:
            self.close()
            return False
        if taken is None:
            return False
        line, self.buffer = taken[0], b""
        self.busy = True
        request = _ctl_request(line)
        if isinstance(request, str):
            self.send({"ok": False, "usage": True, "error": request}, last=True)
            return True
        try:
            self.listener.handler(self, request)
        except Exception:
            self.send({"ok": False, "error": "internal error; see procwrap's log"}, last=True)
            raise
        return True

    def send(self, answer, last=False):
        """One JSON answer line; `last` closes the connection once it is sent."""
        import json
        self.closing = self.closing or last
        if len(self.out) > CTL_FOLLOW_BACKLOG:
            return self.close()         # a follower that does not read: let it go
        if self.sock is None:
            return
        self.queue((json.dumps(answer, separators=(",", ":")) + "\n").encode("utf-8"))

    def follow(self, ring, stream=None):
        """tail -f: every chunk the process writes from now on (of `stream` only, if given)."""
        self.following, self.stream = ring, stream
        self.hear_busy = True
        ring.followers.append(self.on_output)

    def on_output(self, stream, data):
        """tail -f: one chunk of the process's output, as [stream, line] pairs."""
        if self.stream is None or stream == self.stream:
            self.send({"ok": True, "lines": [[stream, line] for line in
                                             data.decode("utf-8", "replace").split("\n")]})

    def close(self):
        """Done with this client (a follower stops following)."""
        if self.following is not None and self.on_output in self.following.followers:
            self.following.followers.remove(self.on_output)
        _Connection.close(self)


def _ctl_request(line):
    """A ctl request line checked: {command, args, lines, follow}; or what is wrong with it."""
    import json
    try:
        request = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return "not a JSON request"
    if not isinstance(request, dict):
        return "not a JSON object"
    args, lines = request.get("args") or [], request.get("lines", 10)
    if not isinstance(request.get("command"), str):
        return "command: expected a string"
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        return "args: expected a list of strings"
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
        return "lines: expected a whole number >= 0"
    if not isinstance(request.get("follow", False), bool):
        return "follow: expected true or false"
    return {"command": request["command"], "args": args, "lines": lines,
            "follow": request.get("follow", False)}


class _CtlServer(_Listener):
    """The control socket of `procwrap ctl`: a Unix stream socket created 0600,
    one JSON request line per connection, JSON answer lines back."""
    connection_class = _CtlConnection

    def __init__(self, loop, path, handler, where="--ctl-socket"):
        import socket
        self.own = _OwnPath(path, where, 0o600, _dead_socket)
        refusal = self.own.refusal()
        if refusal is not None:
            if _answers(path):
                refusal = ("another procwrap is listening on %s; stop it or pick another path"
                           % path)
            raise UsageError("%s: %s" % (where, refusal))
        if os.path.lexists(path):
            os.unlink(path)             # a dead socket of ours (checked just above)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)           # created 0600: only procwrap's user may control it
        try:
            # bind() creates the file and fails on anything already there
            # (EADDRINUSE), so it never replaces or follows what appeared since.
            sock.bind(path)
            self.own.created()
        except (OSError, ValueError) as error:
            sock.close()
            raise UsageError("%s: cannot create %s: %s; fix the path"
                             % (where, path, _read_error(error)))
        finally:
            os.umask(old)
        sock.listen(CTL_BACKLOG)
        _Listener.__init__(self, loop, sock, handler)

    def close(self):
        """Close every connection, the socket, and remove its file (if still ours)."""
        _Listener.close(self)
        self.own.remove()


def _metric_label(value):
    """A Prometheus label value, escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metrics(object):
    """Prometheus text exposition 0.0.4: families in order, HELP and TYPE first."""

    def __init__(self, extra=None):
        self.families = []      #: [(name, type, help, [(labels, value)])]
        self._by_name = {}
        #: labels of every sample (--labels, its keys made Prometheus names)
        self.extra = dict((_metric_label_name(k), v) for k, v in (extra or {}).items())

    def add(self, metric, metric_type, help_text, value, **labels):
        """One sample of `metric` (a counter or gauge), with its labels."""
        family = self._by_name.get(metric)
        if family is None:
            family = self._by_name[metric] = (metric, metric_type, help_text, [])
            self.families.append(family)
        family[3].append((dict(self.extra, **labels) if self.extra else labels, value))

    def text(self):
        """The exposition text, ending in a newline (promtool insists)."""
        lines = []
        for name, kind, help, samples in self.families:
            lines.append("# HELP %s %s" % (name, help))
            lines.append("# TYPE %s %s" % (name, kind))
            for labels, value in samples:
                label_text = ",".join('%s="%s"' % (k, _metric_label(v))
                                      for k, v in sorted(labels.items()))
                lines.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "",
                                          repr(float(value)) if isinstance(value, float)
                                          else int(value)))
        return "\n".join(lines) + "\n"


#: procwrap ctl's commands, in --help order: (name, its arguments, what it
#: does).  The client checks a command line against it; the server runs
#: _Control.ctl_<name>; a process's name comes last.
CTL_COMMANDS = (
    ("status", ("[NAME...]",), "a table: name, state, pid, uptime, restarts, last exit"),
    ("start", ("NAME...",), "start stopped, exited or failed processes; waits until each "
                            "runs (for its startSeconds) or fails, and says which"),
    ("stop", ("NAME...",), "stop them (stop signal, grace, SIGKILL); waits until each has "
                           "stopped; they stay stopped"),
    ("restart", ("NAME...",), "stop them, then start them; waits as start does"),
    ("signal", ("SIGNAL", "NAME..."), "send a signal to each one's process group"),
    ("pid", ("NAME",), "its pid (refused, exit 1, when it is not running)"),
    ("tail", ("[-f]", "[-n N]", "NAME", "[stdout|stderr]"),
     "its recent output, or one stream's (-f: and what follows, until ^C)"),
    ("maintail", ("[-f]", "[-n N]"), "procwrap's own recent records (-f: and what follows)"),
    ("reload", (), "read the config again: start added processes, stop removed ones, "
                   "restart changed ones"),
    ("reopen-logs", (), "reopen every process's log file (logs.file), as logrotate's "
                        "postrotate needs"),
    ("shutdown", (), "stop everything and exit"),
)
#: name -> its positional arguments (NAME... takes one or more, [NAME...] any)
_CTL_ARGS = dict((name, [arg for arg in args if not arg.startswith("[-")])
                 for name, args, _ in CTL_COMMANDS)
#: Commands whose processes are waited for, and the state each waits for.
_CTL_WAITS = {"start": "running", "restart": "running", "stop": "stopped"}


def _ctl_check(words):
    """A usage problem of `procwrap ctl WORDS...` (command and arguments), or None."""
    wanted, given = _CTL_ARGS[words[0]], words[1:]
    fixed = [arg for arg in wanted if not arg.startswith("[") and not arg.endswith("...")]
    many = [arg for arg in wanted if arg.rstrip("]").endswith("...")]
    optional = [arg for arg in wanted if arg.startswith("[") and not arg.endswith("...]")]
    least = len(fixed) + sum(1 for arg in many if not arg.startswith("["))
    most = None if many else len(fixed) + len(optional)
    if len(given) < least or most is not None and len(given) > most:
        return "expects %s" % (" ".join(wanted) or "no arguments")
    if words[0] == "tail" and len(given) == 2 and given[1] not in ("stdout", "stderr"):
        return "the stream is stdout or stderr, not %r" % given[1]
    return None


def _ctl_usage():
    """`procwrap ctl --help`, from CTL_COMMANDS."""
    lines = ["usage: procwrap ctl [--socket PATH | -c FILE] [--json] COMMAND [ARGS]", "",
             "commands (NAME may be a * pattern, or all):"]
    for name, args, what in CTL_COMMANDS:
        head = " ".join((name,) + args)
        words, line, rows = what.split(), "", []
        for word in words:          # wrapped at 82 columns, under the description
            if line and len(line) + 1 + len(word) > 56:
                rows.append(line)
                line = ""
            line = (line + " " + word).strip()
        rows.append(line)
        if len(head) > 22:          # a long head has the description below it
            lines.append("  " + head)
            lines.extend("  %-22s  %s" % ("", row) for row in rows)
            continue
        lines.append("  %-22s  %s" % (head, rows[0]))
        lines.extend("  %-22s  %s" % ("", row) for row in rows[1:])
    lines += ["", "--socket defaults to PROCWRAP_CTL_SOCKET, the supervisor's --ctl-socket twin;",
              "-c FILE reads it from the config's ctlSocket.  --json prints the answers as JSON",
              "lines.  Exit status: 0 done; 1 refused or failed (start of a running process,",
              "stop of a stopped one, a start that failed or is still waiting after %d s); 2"
              % CTL_WAIT,
              "usage (an unknown command, or a name that matches no process); 69 no supervisor",
              "on the socket.", ""]
    return "\n".join(lines)


def _lock_status(semaphore):
    """A process's lock in /status: its name, held or not, and who holds it."""
    if semaphore is None:
        return None
    return {"name": semaphore.name, "slots": semaphore.limit, "held": semaphore.held,
            "waiting": semaphore.waiting, "holders": [
                {"host": info.get("host"), "pid": info.get("pid")}
                for info in semaphore.holders]}


class _Control(object):
    """The supervisor's control surface: its HTTP endpoints and its ctl
    socket, set up from the health settings (http, ctl_socket), answered
    from what the supervisor and its health say.  ?wait requests are
    answered when the supervisor has looked at health again (a watcher)."""
    http = None             #: the _HttpServer, with --http
    ctl = None              #: the _CtlServer, with --ctl-socket

    def __init__(self, supervisor, settings):
        self.supervisor = supervisor
        self.health = supervisor.health
        self.loop = supervisor.loop
        self.waiters = []               #: [connection, path, deadline Timer] of ?wait
        self.actions = []               #: ctl start/stop/restart waiting for their processes
        self.prommerge_errors = {}      #: name -> failed or late scrapes of its promTarget
        where = settings.get("where", {})
        if settings.get("http") is not None:
            host, port = settings["http"]
            try:
                self.http = _HttpServer(self.loop, host, port, self.on_http)
            except OSError as error:
                raise UsageError("--http: cannot listen on %s:%d: %s; pick another port"
                                 % (host, port, error.strerror))
            supervisor.log.event("serving /liveness /readiness /metrics /status on http://%s:%d"
                                 % self.http.address, event="http",
                                 address="%s:%d" % self.http.address)
        if settings.get("ctl_socket"):
            self.ctl = _CtlServer(self.loop, settings["ctl_socket"], self.on_ctl,
                                  where.get("ctl_socket", "--ctl-socket"))
            supervisor.log.ring = _Ring()       # procwrap's own records, for ctl maintail
        supervisor.watchers.append(self.on_health)
        supervisor.closers.append(self.close)

    def close(self):
        """Stop serving (the run is over)."""
        for server in (self.http, self.ctl):
            if server is not None:
                server.close()

    # -- HTTP endpoints
    def on_http(self, connection, target):
        """Route one GET/HEAD request."""
        path, _, query = target.partition("?")
        if path in ("/liveness", "/readiness"):
            wait = None
            for item in query.split("&"):
                key, equals, value = item.partition("=")
                if key == "wait":
                    try:
                        wait = (min(_parse_duration(value), HTTP_WAIT_MAX) if equals
                                else HTTP_WAIT_DEFAULT)
                    except ValueError:
                        return connection.respond(400, {"error": "?wait=SECONDS"})
            # ?wait holds the answer until the check passes or the wait ends:
            # a deploy script waits for readiness without polling, and the
            # answer comes the moment health changes (on_health), not a tick later.
            waiter = [connection, path, None]
            if wait and not self._check(path)[0]:
                waiter[2] = self.loop.call_later(wait, self._answer_waiter, waiter, True)
                self.waiters.append(waiter)
                return
            return self._answer_waiter(waiter, True)
        if path == "/metrics":
            return connection.respond(200, self.metrics().encode(),
                                      "text/plain; version=0.0.4; charset=utf-8")
        if path == "/status":
            return connection.respond(200, self.status())
        if path == "/prommerge":
            return self._prommerge(connection)
        connection.respond(404, {"error": "no such endpoint; try /liveness, /readiness, "
                                          "/metrics, /status or /prommerge"})

    def _prommerge(self, connection):
        """GET /prommerge: every running process's promTarget scraped at once
        (a thread each, bounded by PROMMERGE_TIMEOUT), merged with
        process_name labels; one that fails or is late is left out and
        counted in procwrap_prommerge_errors_total."""
        import threading
        targets = [(p.name, p.spec.prom_target) for p in self.supervisor.processes
                   if p.spec.prom_target and p.state == _State.RUNNING]
        scrape = {"left": len(targets), "texts": {}, "answered": False}

        def finish():
            if scrape["answered"]:
                return
            scrape["answered"] = True
            timer.cancel()
            for name, _ in targets:
                if name not in scrape["texts"]:
                    self.prommerge_errors[name] = self.prommerge_errors.get(name, 0) + 1
            text = _merge_prometheus([(name, scrape["texts"][name]) for name, _ in targets
                                      if name in scrape["texts"]])
            errors = _Metrics()
            for process in self.supervisor.processes:
                if process.spec.prom_target:
                    errors.add("procwrap_prommerge_errors_total", "counter", "Scrapes of the "
                               "process's promTarget that failed or were late.",
                               self.prommerge_errors.get(process.name, 0),
                               process_name=process.name)
            connection.respond(200, (text + errors.text()).encode("utf-8", "replace"),
                               "text/plain; version=0.0.4; charset=utf-8")

        def got(name, text):
            if text is not None and not scrape["answered"]:
                scrape["texts"][name] = text
            scrape["left"] -= 1
            if scrape["left"] <= 0:
                finish()
        timer = self.loop.call_later(PROMMERGE_TIMEOUT + 0.5, finish)
        if not targets:
            return finish()
        for name, url in targets:
            thread = threading.Thread(target=_scrape, args=(url, self.loop, got, name))
            thread.daemon = True
            thread.start()

    def _check(self, path):
        """(ok, body) of /liveness or /readiness."""
        test = self.health.is_live if path == "/liveness" else self.health.is_ready
        results = dict((p.name, {"state": p.state, "ok": test(p)})
                       for p in self.supervisor.processes)
        ok = all(r["ok"] for r in results.values())
        if path == "/readiness":
            # Every process ready is not enough: init entries must be done
            # and no shutdown begun, which health.ready (as last reported) says.
            ok = ok and self.health.ready
        return ok, {"status": "ok" if ok else "fail", "processes": results}

    def on_health(self):
        """The supervisor looked at health: answer the ?wait requests, and the
        ctl actions, now met."""
        for waiter in list(self.waiters):
            self._answer_waiter(waiter)
        for action in list(self.actions):
            self._settle(action)

    def _answer_waiter(self, waiter, final=False):
        """Answer a ?wait request once healthy, or at its deadline."""
        connection, path, timer = waiter
        ok, body = self._check(path)
        if not ok and not final:
            return
        if timer is not None:
            timer.cancel()
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        connection.respond(200 if ok else 503, body)

    def status(self):
        """The whole state as a JSON-ready dict (no environment, so no secrets)."""
        supervisor, health = self.supervisor, self.health
        now = self.loop.clock()
        processes = []
        for process in supervisor.everything():
            processes.append({
                "name": process.name, "host": process.spec.labels.get("host")
                if process.spec.remote else None, "state": process.state, "pid": process.pid,
                "uptime": round(now - process.started_at, 3)
                if process.state in _State.ALIVE else 0,
                "starts": process.starts, "restarts": process.restarts_total,
                "lastExit": process.status, "description": process.description,
                "live": health.is_live(process), "ready": health.is_ready(process),
                "status": health.status_text.get(process.name),
                "statusUpdate": health.run_status[process.name].values
                if process.name in health.run_status else None,
                "lock": _lock_status(supervisor.locks.get(process.name)),
                "probes": [{"probe": p.kind, "handler": p.spec.handler,
                            "result": {True: "passing", False: "failing", None: "unknown"}[
                                p.result], "failures": p.failures, "message": p.message}
                           for p in health.probes.get(process.name, ())]})
        return {"version": __version__, "pid": os.getpid(),
                "uptime": round(time.time() - supervisor.started, 3), "ready": health.ready,
                "live": all(health.is_live(p) for p in supervisor.processes),
                "shuttingDown": supervisor.shutting_down, "preempted": supervisor.preempted,
                "processes": processes}

    def metrics(self):
        """/metrics: per process and procwrap's own, Prometheus text format."""
        text = self._metrics()
        for process in self.supervisor.processes:
            if process.spec.prom_target:
                text.add("procwrap_prommerge_errors_total", "counter", "Scrapes of the "
                         "process's promTarget that failed or were late.",
                         self.prommerge_errors.get(process.name, 0), process_name=process.name)
        for name, semaphore in sorted(self.supervisor.locks.items()):
            text.add("procwrap_lock_held", "gauge", "1 while the process holds a slot of its "
                     "lock.", int(semaphore.held), name=name, lock=semaphore.name)
            text.add("procwrap_lock_waiters", "gauge", "Waiters behind the slots of the lock, "
                     "when last looked at.", semaphore.waiters, name=name, lock=semaphore.name)
            if semaphore.acquired_in is not None:
                text.add("procwrap_lock_acquire_seconds", "gauge", "Seconds the last "
                         "acquisition of a slot took.", round(semaphore.acquired_in, 4),
                         name=name, lock=semaphore.name)
        return text.text()

    def _metrics(self):
        """The series of every supervisor (the locks' are added by metrics())."""
        supervisor, health = self.supervisor, self.health
        metrics = _Metrics(supervisor.labels)
        now = self.loop.clock()
        metrics.add("procwrap_info", "gauge", "procwrap's version.", 1, version=__version__)
        metrics.add("procwrap_start_time_seconds", "gauge", "When procwrap started, in Unix "
                    "time.", float(supervisor.started))
        cpu, rss = _proc_usage(os.getpid())
        if cpu is not None:
            metrics.add("procwrap_cpu_seconds_total", "counter", "CPU time procwrap used.", cpu)
            metrics.add("procwrap_resident_memory_bytes", "gauge", "procwrap's resident memory.",
                        rss)
        metrics.add("procwrap_ready", "gauge", "1 when every process is ready.",
                    int(health.ready))
        if health.status_socket is not None:
            metrics.add("procwrap_status_datagrams_rejected_total", "counter", "Datagrams on "
                        "the status socket that were not a JSON object with a name.",
                        health.status_socket.bad)
        for process in supervisor.processes:
            name = process.name
            running = process.state in _State.ALIVE
            who = dict(name=name)       # and the host, for a process on another one
            if process.spec.remote is not None:
                who["host"] = process.spec.labels["host"]
            metrics.add("procwrap_process_up", "gauge", "1 while the process runs.",
                        int(running), **who)
            metrics.add("procwrap_process_ready", "gauge", "1 while the process is ready.",
                        int(health.is_ready(process)), **who)
            for state in (_State.STOPPED, _State.WAITING, _State.STARTING, _State.RUNNING,
                          _State.BACKOFF, _State.STOPPING, _State.EXITED, _State.FATAL):
                metrics.add("procwrap_process_state", "gauge", "1 for the state the process "
                            "is in.", int(process.state == state), state=state, **who)
            metrics.add("procwrap_process_starts_total", "counter", "Times the process was "
                        "started.", process.starts, **who)
            metrics.add("procwrap_process_restarts_total", "counter", "Times the process was "
                        "started again.", process.restarts_total, **who)
            if process.spec.memory_limit:
                metrics.add("procwrap_memory_limit_kills_total", "counter", "Runs stopped "
                            "for going over their memoryLimit.", process.memory_kills, **who)
            if process.status is not None:
                metrics.add("procwrap_process_last_exit_status", "gauge", "Shell-style status "
                            "of the last exit.", process.status, **who)
            metrics.add("procwrap_process_uptime_seconds", "gauge", "Seconds since the "
                        "process last started (0 when not running).",
                        round(now - process.started_at, 3) if running else 0.0, **who)
            for probe in health.probes[name]:
                metrics.add("procwrap_probe_failures_total", "counter", "Failed probe checks.",
                            probe.failures, probe=probe.kind, **who)
            said = health.run_status.get(name)
            for key in STATUS_COUNT_KEYS if said is not None else ():
                if key in said.values:
                    metrics.add("procwrap_status_count", "gauge", "The counts the process's "
                                "status updates gave.", said.values[key],
                                kind=key[:-len("_count")], **who)
            if running and process.pid is not None and process.spec.remote is None:
                # The main pid only: summing a process's descendants would
                # walk /proc on every scrape, for 500 processes 500 walks.
                cpu, rss = _proc_usage(process.pid)
                if cpu is not None:
                    metrics.add("procwrap_process_cpu_seconds_total", "counter", "CPU time of "
                                "the process's main pid.", cpu, **who)
                    metrics.add("procwrap_process_resident_memory_bytes", "gauge", "Resident "
                                "memory of the process's main pid.", rss, **who)
        return metrics

    # -- procwrap ctl
    def on_ctl(self, connection, request):
        """One `procwrap ctl` request, dispatched through CTL_COMMANDS to
        ctl_<command>; names (and * patterns, and `all`) are found here, for
        the handlers that take processes; errors come back as {"ok": false,
        "error": ...}."""
        import fnmatch
        command, args = request["command"], request["args"]
        # The client checks commands too, but a server cannot trust its
        # clients (another version, a script speaking the protocol by hand).
        if command not in _CTL_ARGS or _ctl_check([command] + args):
            problem = ("unknown command %r%s" % (command, _did_you_mean(command, _CTL_ARGS))
                       if command not in _CTL_ARGS else _ctl_check([command] + args))
            return connection.send({"ok": False, "usage": True, "error": problem}, last=True)
        handler = getattr(self, "ctl_" + command.replace("-", "_"))
        wanted = _CTL_ARGS[command]
        if not any(arg.strip("[]").startswith("NAME") for arg in wanted):
            return handler(connection, request)
        skip = wanted.index(next(a for a in wanted if a.strip("[]").startswith("NAME")))
        if not args[skip:]:
            return handler(connection, request)     # status: every process
        by_name, found = self.supervisor.by_name, []
        for pattern in args[skip:skip + 1] if "NAME" in wanted else args[skip:]:
            matches = [p for p in self.supervisor.processes if pattern == "all"
                       or fnmatch.fnmatchcase(p.name, pattern)
                       or p.spec.replica_of == pattern]     # an entry: all its replicas
            if not matches:
                return connection.send({"ok": False, "usage": True, "error": "no process "
                                        "named %r%s" % (pattern, _did_you_mean(
                                            pattern, by_name) or "; known: "
                                            + ", ".join(sorted(by_name)))}, last=True)
            found.extend(p for p in matches if p not in found)
        if self.supervisor.shutting_down and command in ("start", "restart"):
            return connection.send({"ok": False, "error": "procwrap is shutting down"},
                                   last=True)
        if "NAME" in wanted:
            return handler(connection, request, found[0])
        if command not in _CTL_WAITS:
            return handler(connection, request, found)
        self._act(connection, command, found, handler)

    def _act(self, connection, command, processes, handler):
        """start, stop, restart: each process acted on (or refused), then
        the answer once each has reached its goal, failed, or CTL_WAIT
        (and its stop grace) has passed."""
        results, waiting = {}, []
        for process in processes:
            starts = process.starts         # before: a start may spawn at once
            refusal = handler(process)
            if refusal:
                results[process.name] = {"name": process.name, "ok": False, "state":
                                         process.state, "error": refusal}
            else:
                waiting.append((process, starts))
        if not waiting:
            return self._acted(connection, processes, results)
        grace = max(p.spec.stop_timeout for p, _ in waiting) if command != "start" else 0
        action = {"connection": connection, "command": command, "processes": processes,
                  "results": results, "waiting": waiting}
        action["timer"] = self.loop.call_later(CTL_WAIT + grace, self._settle, action, True)
        self.actions.append(action)
        self._settle(action)

    def _settle(self, action, final=False):
        """Look again at the processes an action waits for; answer once all are settled."""
        command, results = action["command"], action["results"]
        now = self.loop.clock()
        for process, starts in list(action["waiting"]):
            outcome = _ctl_outcome(process, command, starts, now)
            if outcome is None and final:
                outcome = (False, "still %s after %s s" % (process.state, _format_seconds(
                    CTL_WAIT)))
            if outcome is None:
                continue
            action["waiting"].remove((process, starts))
            ok, message = outcome
            results[process.name] = {"name": process.name, "ok": ok, "state": process.state,
                                     "message" if ok else "error": message}
        if action["waiting"]:
            wake = [process.started_at + process.spec.start_seconds - now
                    for process, _ in action["waiting"] if process.state == _State.RUNNING
                    and process.spec.start_seconds and command != "stop"]
            if wake and action.get("wake") is None:     # startSeconds ends with no change
                action["wake"] = self.loop.call_later(max(0.0, min(wake)) + 0.001,
                                                      self._rewake, action)
            return
        action["timer"].cancel()
        if action in self.actions:
            self.actions.remove(action)
        self._acted(action["connection"], action["processes"], results)

    def _rewake(self, action):
        action["wake"] = None
        if action in self.actions:
            self._settle(action)

    def _acted(self, connection, processes, results):
        """The answer: every process's outcome, in the order they were named."""
        answers = [results[p.name] for p in processes]
        connection.send({"ok": all(r["ok"] for r in answers), "results": answers}, last=True)

    # Each ctl_<command> answers one request.  Those that take a process get it
    # found and checked by on_ctl; they answer themselves and return False when
    # they refuse, otherwise on_ctl answers with the process's new state.
    def ctl_status(self, connection, request, processes=None):
        """The table `procwrap ctl status` prints: /status's processes (those named)."""
        table = self.status()["processes"]
        if processes is not None:
            names = set(p.name for p in processes)
            table = [row for row in table if row["name"] in names]
        connection.send({"ok": True, "processes": table}, last=True)

    def ctl_shutdown(self, connection, request):
        """Answer first: the shutdown may close this connection's loop soon after."""
        connection.send({"ok": True, "message": "shutting down"}, last=True)
        self.supervisor.shutdown("procwrap ctl shutdown")

    def ctl_reopen_logs(self, connection, request):
        """Each log file written out, closed and opened again at its path."""
        files = [p.log_file for p in self.supervisor.everything() if p.log_file is not None]
        for file in files:
            file.reopen()
        failed = [file.path for file in files if file.fd is None]
        if failed:
            return connection.send({"ok": False, "error": "cannot reopen %s; see procwrap's "
                                    "log" % ", ".join(failed)}, last=True)
        connection.send({"ok": True, "message": "reopened %s"
                         % _plural(len(files), "log file")}, last=True)

    def ctl_reload(self, connection, request):
        """Read the config again; the answer says what was added, removed, changed."""
        connection.send(self.supervisor.reload(), last=True)

    def ctl_start(self, process):
        """Start a stopped, exited or failed process; refuse one that is alive
        (exit 1 for the client: the request made sense, the state said no)."""
        if process.state in _State.ALIVE or process.gating:
            return "%s is already %s" % (process.name, "waiting for its lock or API server"
                                         if process.gating else process.state)
        process.start(manual=True)

    def ctl_stop(self, process):
        """Stop it for good: its restartPolicy no longer applies until a start."""
        if process.state in (_State.STOPPED,) + _State.DONE:
            return "%s is not running (%s)" % (process.name, process.state)
        process.stop()

    def ctl_restart(self, process):
        """Stop, then start once it has stopped (the supervisor keeps the order)."""
        self.supervisor.restart(process)

    def ctl_signal(self, connection, request, processes):
        """SIGNAL NAME...: to each one's group (or to it alone with
        --single-child); a bad signal name is a usage error (exit 2), a
        process not running a refusal (exit 1, the others signalled)."""
        args = request["args"]
        try:
            signum = _value_signal(args[0])
        except _BadValue as error:
            return connection.send({"ok": False, "usage": True,
                                    "error": error.message(args[0])}, last=True)
        results = []
        for process in processes:
            if process.state not in _State.ALIVE:
                results.append({"name": process.name, "ok": False, "state": process.state,
                                "error": "%s is not running (%s)" % (process.name,
                                                                     process.state)})
                continue
            process.signal(signum)
            results.append({"name": process.name, "ok": True, "state": process.state,
                            "message": "sent %s" % _signal_name(signum)})
        connection.send({"ok": all(r["ok"] for r in results), "results": results}, last=True)

    def ctl_pid(self, connection, request, process):
        """NAME: its pid, as supervisorctl's pid; a process not running is a refusal."""
        if process.pid is None or process.spec.remote is not None:
            where = " (on %s)" % process.spec.labels.get("host") if process.spec.remote else ""
            connection.send({"ok": False, "error": "%s has no pid here%s (%s)" % (
                process.name, where, process.state)}, last=True)
            return False
        connection.send({"ok": True, "pid": process.pid}, last=True)
        return False

    def ctl_tail(self, connection, request, process):
        """Its last lines from the ring (of one stream, if named); with follow,
        every chunk after them until the client goes away (the connection
        stays busy, so it is never evicted as idle)."""
        if process.ring is None:
            connection.send({"ok": False, "error": "%s's output is not captured "
                             "(log format none)" % process.name}, last=True)
            return False
        stream = request["args"][1] if len(request["args"]) > 1 else None
        self._tail(connection, request, process.ring, stream)
        return False

    def ctl_maintail(self, connection, request):
        """procwrap's own records, as they were written (tail's -n and -f)."""
        self._tail(connection, request, self.supervisor.log.ring, None)

    def _tail(self, connection, request, ring, stream):
        lines = ring.lines(request["lines"], stream)
        connection.send({"ok": True, "lines": lines}, last=not request["follow"])
        if request["follow"]:
            connection.follow(ring, stream)


def _http_open(url, headers=None, timeout=PROMMERGE_TIMEOUT, context=None, method="GET",
               body=None):
    """(connection, response) of one request through http.client, the
    response left to read (a hanging GET, a watch stream); close the
    connection when done.  Raises OSError, ValueError or HTTPException."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, (parts.path or "/") + ("?" + parts.query if parts.query
                                                          else ""), body, headers or {})
        return connection, connection.getresponse()
    except BaseException:
        connection.close()
        raise


def _scrape(url, loop, got, name):
    """In a thread: GET a promTarget, then got(name, text or None) in the loop."""
    import http.client
    text = None
    try:
        connection, answer = _http_open(url)
        try:
            body = answer.read(PROMMERGE_MAX_BYTES + 1)
            if answer.status == 200 and len(body) <= PROMMERGE_MAX_BYTES:
                text = body.decode("utf-8", "replace")
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        text = None
    loop.call_soon_threadsafe(got, name, text)


class _PodWatch(object):
    """Something of the pod's world watched from a daemon thread of its own:
    a hanging GET or a watch stream blocks for minutes, which neither the
    loop nor the worker may.  run() repeats watch() until it says done;
    after a failure it waits out a backoff (1 s doubling to 60 s) and tries
    again, or gives up when failed() says so.  What it finds goes to the
    loop; the thread wakes only when the server answers.  A request meant to
    be held that came back at once with nothing new (`quick`: a server that
    does not hold them, a proxy that cuts them) is followed by a pause of
    1 s doubling to WATCH_PACE, so no server makes it spin."""
    what = "watch"
    failures = 0            #: failures in a row
    quick = False           #: the last request was to be held, and was not

    def __init__(self, loop, log):
        self.loop, self.log = loop, log

    def start(self):
        import threading
        threading.Thread(target=self.run, name="procwrap-" + self.what, daemon=True).start()

    def run(self):
        import http.client
        delay = pace = BACKOFF_INITIAL
        while True:
            self.quick = False
            try:
                if self.watch():
                    return
                delay = BACKOFF_INITIAL
            except (OSError, ValueError, AttributeError, TypeError, http.client.HTTPException,
                    _HttpError) as error:   # AttributeError, TypeError: an answer of another shape
                if not self.failed(error):
                    return
                self.failures += 1
                time.sleep(delay)       # this thread's own backoff after a failure
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if self.quick:
                time.sleep(pace)        # ... and its pace when requests are not held
                pace = min(pace * 2, WATCH_PACE)
            else:
                pace = BACKOFF_INITIAL

    def say(self, message, level="info", **fields):
        """A record, written by the loop."""
        self.loop.call_soon_threadsafe(lambda: self.log.event(message, level, **fields))

    def answered(self, message):
        """A request went through: say so after failures (once), or at the first."""
        if self.failures:
            self.say("%s: %s again" % (self.what, message), event=self.what)
        self.failures = 0

    def failed(self, error):
        """A request failed: True to try again after the backoff."""
        if not self.failures:
            self.say("%s: %s; trying again, waiting longer each time" % (
                self.what, _describe_http(error)), "warning", event=self.what)
        return True

    def watch(self):
        """One request; True when the watch is over."""
        raise NotImplementedError


class _PreemptionWatch(_PodWatch):
    """--preemption-url: GCE's `instance/preempted` read once, then hanging
    GETs (wait_for_change, last_etag, timeout_sec) until it says TRUE;
    on_preempted() then runs in the loop.  Off GCE, where the first request
    fails, it says so and watches nothing (SPECS.md 12.1)."""
    what = "preemption"
    etag = None             #: the ETag of the last answer; None before the first
    value = None            #: what the last answer said

    def __init__(self, loop, log, url, on_preempted):
        _PodWatch.__init__(self, loop, log)
        self.url = url
        self.on_preempted = on_preempted

    def watch(self):
        from urllib.parse import quote
        url = self.url
        if self.etag is not None:
            url += "%swait_for_change=true&timeout_sec=%d%s" % (
                "&" if "?" in url else "?", WATCH_HANG,
                "&last_etag=" + quote(self.etag, safe="") if self.etag else "")
        began = time.monotonic()
        connection, answer = _http_open(url, {"Metadata-Flavor": "Google"}, WATCH_HANG + 30)
        try:
            body = answer.read(4096)
        finally:
            connection.close()
        if answer.status != 200:
            raise _HttpError(answer.status, answer.reason)
        value = body.strip().upper()
        self.quick = self.etag is not None and time.monotonic() - began < 1.0 and (
            value == self.value)
        self.value = value
        if self.etag is None:
            self.say("preemption: watching %s (now %s)" % (self.url, value.decode(
                "latin-1")[:20] or "empty"), event="preemption")
        self.answered("%s answers" % self.url)
        if value == b"TRUE":
            self.loop.call_soon_threadsafe(self.on_preempted)
            return True
        self.etag = answer.getheader("ETag") or ""
        return False

    def failed(self, error):
        """Before the first answer: not on GCE (or no such server); watch nothing."""
        if self.etag is None:
            self.say("preemption: cannot read %s: %s; not watching for preemption" % (
                self.url, _describe_http(error)), "warning", event="preemption")
            return False
        return _PodWatch.failed(self, error)


def _on_preempted(supervisor, drain_url):
    """The node is being preempted: readiness fails from now on (the
    endpoints stop sending traffic), a record says so, and the drain URL, if
    any, gets its POST from the worker; the kubelet's TERM follows."""
    supervisor.log.event("the node is being preempted: readiness fails from now on%s" % (
        "; asking %s to drain" % drain_url if drain_url else ""), "warning", event="preempted")
    supervisor.preempt()
    if drain_url:
        def post():
            connection, answer = _http_open(drain_url, timeout=DRAIN_TIMEOUT, method="POST",
                                            body=b"")
            try:
                return answer.status, answer.read(200).decode("utf-8", "replace").strip()
            finally:
                connection.close()

        def done(result, error):
            if error is None and 200 <= result[0] < 300:
                return supervisor.log.event("drain: %s answered %d" % (drain_url, result[0]),
                                            event="drain")
            supervisor.log.event("drain: %s %s" % (drain_url, "answered %d %s" % result
                                                   if error is None else "failed: %s" % (
                                                       _describe_http(error))),
                                 "warning", event="drain")
        supervisor.loop.run_in_worker(post, done)


class _ContainerWatch(_PodWatch):
    """--exit-with-containers: the pod's own status through the Kubernetes
    API from inside the pod (service-account token, CA, namespace; SPECS.md
    12.3), a GET then `watch` requests from its resourceVersion (410: GET
    again); on_done(terminated) in the loop once every named container's
    state is `terminated`, on_unknown(message) if the pod has no container
    of a name given.  The token is read again for every request (the
    kubelet rotates it)."""
    what = "exit-with-containers"
    version = None          #: the resourceVersion to watch from; None: GET first
    announced = False       #: the first GET said what it watches

    def __init__(self, loop, log, names, environ, on_done, on_unknown):
        import ssl
        _PodWatch.__init__(self, loop, log)
        self.names, self.on_done, self.on_unknown = names, on_done, on_unknown
        where = "--exit-with-containers"
        directory = environ.get("PROCWRAP_SERVICE_ACCOUNT_DIR") or SERVICE_ACCOUNT_DIR
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = (environ.get("KUBERNETES_SERVICE_PORT_HTTPS")
                or environ.get("KUBERNETES_SERVICE_PORT") or "443")
        if not host:
            raise UsageError("%s: KUBERNETES_SERVICE_HOST is not set; it watches the pod "
                             "through the Kubernetes API, from inside the pod" % where)
        self.token_path = os.path.join(directory, "token")
        self.token()
        namespace = environ.get("POD_NAMESPACE")
        if not namespace:
            namespace = self._read(os.path.join(directory, "namespace"), "set POD_NAMESPACE")
        self.pod = environ.get("POD_NAME") or environ.get("HOSTNAME")
        if not self.pod:
            raise UsageError("%s: neither POD_NAME nor HOSTNAME is set; give POD_NAME from the "
                             "downward API (fieldRef: metadata.name)" % where)
        ca = os.path.join(directory, "ca.crt")
        try:
            self.context = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as error:
            raise UsageError("%s: cannot use the CA %s: %s; mount the service account (its "
                             "ca.crt)" % (where, ca, _read_error(error)))
        self.base = "https://%s:%s/api/v1/namespaces/%s/pods" % (
            "[%s]" % host if ":" in host else host, port, namespace)
        self.where = "pod %s/%s" % (namespace, self.pod)

    def _read(self, path, fix):
        try:
            return _read_file(path).decode("utf-8", "replace").strip()
        except (OSError, ValueError) as error:
            raise UsageError("--exit-with-containers: cannot read %s: %s; mount the service "
                             "account token (automountServiceAccountToken), or %s"
                             % (path, _read_error(error), fix))

    def token(self):
        """The service account's token, read now (the kubelet rotates the file)."""
        return self._read(self.token_path, "give the pod a service account")

    def request(self, query):
        """(connection, answer) of a GET of the pod (query None) or a watch."""
        from urllib.parse import quote
        url = self.base + ("/" + quote(self.pod, safe="") if query is None else "?" + query)
        try:
            token = self.token()
        except UsageError as error:
            raise _HttpError(None, str(error))
        return _http_open(url, {"Authorization": "Bearer " + token,
                                "Accept": "application/json"}, WATCH_HANG + 30, self.context)

    def watch(self):
        import json
        from urllib.parse import quote
        if self.version is None:
            connection, answer = self.request(None)
            try:
                pod = _json_answer(answer)
            finally:
                connection.close()
            self.answered("%s read" % self.where)
            if not self.announced:
                self.announced = True
                self.say("exit-with-containers: watching %s for %s to terminate"
                         % (self.where, ", ".join(self.names)), event=self.what)
            if self.judge(pod):
                return True
            self.version = str(pod.get("metadata", {}).get("resourceVersion", ""))
        began, events = time.monotonic(), 0
        connection, answer = self.request(
            "watch=1&fieldSelector=%s&resourceVersion=%s&allowWatchBookmarks=true"
            "&timeoutSeconds=%d" % (quote("metadata.name=" + self.pod, safe=""),
                                    quote(self.version, safe=""), WATCH_HANG))
        try:
            if answer.status == 410:
                self.version = None
                return False
            if answer.status != 200:
                _json_answer(answer)            # raises, with the Status's message
            for line in answer:
                if not line.strip():
                    continue
                event = json.loads(line.decode("utf-8"))
                events += 1
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if pod.get("code") == 410:  # too old a version: GET again
                        self.version = None
                        return False
                    raise _HttpError(pod.get("code"), pod.get("message") or "an ERROR event")
                version = pod.get("metadata", {}).get("resourceVersion")
                if version:
                    self.version = str(version)
                if kind in ("ADDED", "MODIFIED", "DELETED") and self.judge(pod):
                    return True
        finally:
            connection.close()
        self.quick = not events and time.monotonic() - began < 1.0
        return False        # the server ended the watch (timeoutSeconds): watch again

    def judge(self, pod):
        """Done when every named container has terminated (or a name is not
        the pod's: said once, and done)."""
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        known = [c.get("name") for key in ("containers", "initContainers")
                 for c in spec.get(key) or ()]
        unknown = [name for name in self.names if name not in known]
        if unknown and known:
            self.loop.call_soon_threadsafe(self.on_unknown, "--exit-with-containers: %s has "
                                           "no container named %s (its containers: %s)" % (
                                               self.where, ", ".join(unknown),
                                               ", ".join(known)))
            return True
        states = dict((s.get("name"), (s.get("state") or {}).get("terminated"))
                      for key in ("containerStatuses", "initContainerStatuses",
                                  "ephemeralContainerStatuses")
                      for s in status.get(key) or ())
        ended = [(name, states[name]) for name in self.names if states.get(name) is not None]
        if len(ended) < len(self.names):
            return False
        self.loop.call_soon_threadsafe(self.on_done, ended)
        return True


def _json_answer(answer):
    """An API answer's JSON object; an _HttpError with the Status's message
    when it is not a 200."""
    import json
    if answer.status != 200:
        raise _HttpError(answer.status, _http_reason(answer))
    try:
        document = json.loads(answer.read(16 << 20).decode("utf-8"))
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise _HttpError(0, "the answer is not a JSON object")
    return document


def _exit_with_containers(supervisor, ended):
    """Every container named has terminated: shut down, exit 0."""
    said = ", ".join("%s (%s)" % (name, "exit code %s" % state.get("exitCode")
                                  if state.get("reason") in (None, "Completed", "Error")
                                  else "%s, exit code %s" % (state["reason"],
                                                             state.get("exitCode")))
                     for name, state in ended)
    supervisor.log.event("exit-with-containers: %s terminated" % said,
                         event="containers-terminated")
    supervisor.shutdown("the containers it exits with terminated", status=EX_OK)


def _ctl_outcome(process, command, starts, now):
    """Where a process acted on by ctl start/stop/restart stands: None while
    on its way, else (reached, what to say)."""
    state = process.state
    if command == "stop":
        if state in _State.ALIVE:
            return None
        return True, "stopped" if state == _State.STOPPED else state
    if process.gating:
        return None
    failed = state in (_State.BACKOFF, _State.FATAL) or (
        state == _State.EXITED and process.status not in process.spec.success_codes)
    if failed:
        return False, "%s did not start: %s" % (process.name, process.description or state)
    if process.starts <= starts:
        return None
    if state == _State.EXITED:
        return True, "exited (%s)" % process.description
    if state != _State.RUNNING:
        return None
    least = process.spec.start_seconds
    if least and now - process.started_at < least:
        return None
    return True, "started"


# =============================================================================
# CLI
# One table of options, each with its PROCWRAP_<OPTION> twin; --help is
# generated from it.  main() turns every user mistake into one line and 2.
# =============================================================================


def _opt(parse, *args, **options):
    """An option parser from a value type: its text (as a number when
    `number`) through parse(value, *args); a _BadValue is a UsageError in
    the shared wording."""
    number = options.get("number", False)

    def parse_option(text, where):
        """The option's value, or a UsageError naming the flag or twin."""
        value = _number_text(text) if number else text
        try:
            return parse(value, *args)
        except _BadValue as error:
            raise UsageError("%s: %s" % (where, error.message(text)))
    return parse_option


_opt_seconds = _opt(_value_seconds)                         #: --timeout and friends

_opt_count = _opt(_value_number, 0, True, number=True)      #: --retries, --log-max-line

_opt_port = _opt(_value_port, True)                         #: --status-port (0: any free one)

_opt_factor = _opt(_value_number, 1, False, 1000.0, number=True)    #: --retry-backoff

_opt_fraction = _opt(_value_fraction, number=True)          #: --retry-jitter

_opt_signal = _opt(_value_signal)                           #: --stop-signal


def _opt_signal_map(text, where):
    """--signal-map: FROM:TO pairs separated by commas; an empty TO drops FROM."""
    mapping = {}
    unforwarded = set(getattr(signal, name) for name in UNFORWARDED_SIGNALS)
    for pair in text.split(","):
        source, colon, target = pair.strip().partition(":")
        try:
            if not colon:
                raise ValueError(pair)
            source = _parse_signal(source)
            target = _parse_signal(target) if target.strip() else None
        except ValueError:
            raise UsageError(BAD_VALUE_MSG % (where, "expected FROM:TO pairs like TERM:INT,"
                                              "HUP:USR1 (HUP: to drop HUP)", text))
        if source in unforwarded:
            raise UsageError("%s: %s never reaches procwrap's handlers, so it cannot be "
                             "mapped; map another signal" % (where, _signal_name(source)))
        mapping[source] = target
    return mapping


def _opt_codes(text, where):
    """--success-codes: exit codes separated by commas."""
    codes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) > 255:
            raise UsageError(BAD_VALUE_MSG % (where, "expected exit codes 0-255 separated by "
                                              "commas, like 0,3", text))
        codes.append(int(part))
    return tuple(codes)


def _opt_names(text, where):
    """--skip: names separated by commas."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _opt_formation(text, where):
    """-m/--formation: TYPE=N pairs separated by commas (all=N for every type)."""
    pairs = []
    for part in text.split(","):
        name, equals, count = part.strip().partition("=")
        if not equals or not name.strip() or not _is_digits(count.strip()):
            raise UsageError(BAD_VALUE_MSG % (where, "expected TYPE=N pairs separated by "
                                              "commas, like web=2,worker=1 (all=N: each)", text))
        pairs.append((name.strip(), int(count)))
    return pairs


def _opt_choice(choices):
    """A parser for an option whose value is one of `choices`."""
    return _opt(_value_choice, choices)


def _opt_labels(text, where):
    """--labels: a JSON object of strings."""
    import json
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(v, str) and "\0" not in k + v for k, v in value.items()):
        raise UsageError(BAD_VALUE_MSG % (where, 'expected a JSON object of strings, like '
                                          '{"team": "core"}', text))
    return value


def _opt_udp(text, where):
    """--events-udp: HOST:PORT, the host given (an IP or a name)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host.strip("[]") or not _is_digits(port) or not 0 < int(port) < 65536:
        raise UsageError(BAD_VALUE_MSG % (where, "expected HOST:PORT, like 127.0.0.1:8125",
                                          text))
    return text


def _opt_url(text, where, expected="expected an http:// or https:// URL"):
    """--drain-url: an http:// or https:// URL."""
    if not text.startswith(("http://", "https://")) or len(text) < 10:
        raise UsageError(BAD_VALUE_MSG % (where, expected, text))
    return text


def _opt_preemption(text, where):
    """--preemption-url: a URL, or gce for the GCE metadata server's."""
    return PREEMPTION_URL_GCE if text == "gce" else _opt_url(
        text, where, "expected an http:// or https:// URL, or gce")


def _opt_http(text, where):
    """--http: [HOST:]PORT."""
    return _parse_http_address(text, where)


def _opt_location(text, where):
    """--env-locations: a location string, parsed now so a typo stops us at once."""
    _parse_location(text, where)
    return text


def _opt_suffix(text, where):
    """--resolve-suffix: the end of a variable's name, never empty (every name
    would then be a location to resolve)."""
    if not re.match(r"\A[A-Za-z0-9_]+\Z", text):
        raise UsageError(BAD_VALUE_MSG % (where, "expected letters, digits and '_', like "
                                          + RESOLVE_SUFFIX, text))
    return text


def _opt_text(text, where):
    """Any text, as given."""
    return text


def _opt_assignment(text, where):
    """--env: NAME=VALUE as a (name, value) pair."""
    name, equals, value = text.partition("=")
    if not equals or not name or "\x00" in name:
        raise UsageError(BAD_VALUE_MSG % (where, "expected NAME=VALUE", text))
    return (name, value)


class _Option(object):
    """One command-line option and its environment twin."""
    __slots__ = ("flags", "dest", "metavar", "parse", "default", "modes", "help", "repeat")

    def __init__(self, flags, metavar, parse, default, modes, help, repeat=False):
        self.flags = flags          #: ('-c', '--config')
        self.dest = flags[-1][2:].replace("-", "_")
        self.metavar = metavar      #: None for a flag (no value)
        self.parse = parse          #: func(text, where) -> value
        self.default = default
        self.modes = modes          #: 'wrap', 'supervise', or both
        self.help = help
        self.repeat = repeat        #: may be given many times (a list)

    @property
    def env(self):
        """The environment twin of this option: PROCWRAP_<OPTION>."""
        return "PROCWRAP_" + self.dest.upper()


_BOTH = ("wrap", "supervise", "check", "remote")

_WRAP = ("wrap", "remote")
_WRAP_ONLY = ("wrap",)          #: what needs the command on this machine
_REMOTE = ("remote",)

_SUPERVISE = ("supervise", "check")
_REPORT = ("wrap", "supervise")
_LOCKS = ("wrap", "locks")

_OPTIONS = [
    _Option(("-c", "--config"), "FILE", _opt_text, None, _SUPERVISE,
            "supervise the processes in FILE (.json, .toml, .yaml); '-' reads JSON on "
            "stdin; in PROCWRAP_CONFIG, text starting with '{' is the JSON itself"),
    _Option(("--procfile",), "FILE", _opt_text, None, _SUPERVISE,
            "run the processes of a Procfile (as -c does for a file named Procfile*): "
            "each line through /bin/sh -c, PORT given, the first exit stops the others"),
    _Option(("--port",), "PORT", _opt_port, None, _SUPERVISE,
            "a Procfile's base PORT: +100 per line, +1 per copy (default: PORT of the env "
            "files, else of the environment, else 5000)"),
    _Option(("-m", "--formation"), "TYPE=N,...", _opt_formation, [], _SUPERVISE,
            "a Procfile: run N copies of TYPE, named TYPE.1 ... (all=N: each type)"),
    _Option(("--keep-going",), None, None, False, _SUPERVISE,
            "a Procfile: restart a process that exits (restartPolicy Always) instead of "
            "stopping the others"),
    _Option(("--log-format",), "FORMAT", _opt_choice(LOG_FORMATS), None, _BOTH,
            "json, logfmt, text or none: one record per line of output on stdout "
            "(default: none = pass-through in wrap mode, json in supervisor mode)"),
    _Option(("--log-timestamps",), None, None, False, _BOTH,
            "text format: start each line with the time, HH:MM:SS (as honcho does)"),
    _Option(("--log-labels",), None, None, False, _BOTH,
            "text format: show each process's labels after its name"),
    _Option(("--color",), "WHEN", _opt_choice(("auto", "always", "never")), "auto", _BOTH,
            "text format: colour names: auto (when stdout is a terminal and NO_COLOR is "
            "unset or empty; FORCE_COLOR forces it), always or never"),
    _Option(("--log-merge-json",), None, None, False, _BOTH,
            "json format: merge a line that is a JSON object into its record"),
    _Option(("--log-max-line",), "BYTES", _opt_count, None, _BOTH,
            "split lines longer than this into records marked partial (default 65536)"),
    _Option(("--http",), "[HOST:]PORT", _opt_http, None, _SUPERVISE,
            "serve /liveness, /readiness, /metrics and /status on this address "
            "(8111 is the convention; the host defaults to 0.0.0.0)"),
    _Option(("--labels",), "JSON", _opt_labels, None, _SUPERVISE,
            "labels for every record and metric, a JSON object of strings (over the config's "
            "labels, which are over --labels-file's)"),
    _Option(("--labels-file",), "PATH", _opt_text, None, _SUPERVISE,
            "labels from a Kubernetes Downward API labels file (key=\"value\" lines), read "
            "at the start; e.g. /etc/podinfo/labels"),
    _Option(("--labels-exclude",), "PATTERNS", _opt_names, [], _SUPERVISE,
            "leave out the labels file's keys that match these * patterns "
            "(comma-separated), like pod-template-hash", repeat=True),
    _Option(("--events-udp",), "HOST:PORT", _opt_udp, None, _SUPERVISE,
            "send a JSON datagram per lifecycle event (start, exit, restart, probe failure, "
            "memory-limit stop, shutdown) to a collector; never blocks, never fails the run"),
    _Option(("--preemption-url",), "URL|gce", _opt_preemption, None, _SUPERVISE,
            "watch the node's preemption flag (gce: the GCE metadata server's instance/"
            "preempted) with hanging GETs; once TRUE, /readiness fails and a record says so"),
    _Option(("--drain-url",), "URL", _opt_url, None, _SUPERVISE,
            "with --preemption-url: POST to this URL once preempted (Envoy: http://127.0.0.1:"
            "15000/drain_listeners?inboundonly&graceful)"),
    _Option(("--exit-with-containers",), "NAMES", _opt_names, [], _SUPERVISE,
            "shut down and exit 0 once these containers of the pod (comma-separated) have "
            "terminated: a sidecar of a Job; watches the pod through the Kubernetes API",
            repeat=True),
    _Option(("--readiness-file",), "PATH", _opt_text, None, _SUPERVISE,
            "create PATH when every process is ready, remove it when not and at exit "
            "(containers often use /tmp/started)"),
    _Option(("--status-port",), "PORT", _opt_port, None, _SUPERVISE,
            "UDP port on 127.0.0.1 for heartbeats and status messages from children "
            "(default: any free port, when a heartbeat probe needs one)"),
    _Option(("--ctl-socket",), "PATH", _opt_text, None, _SUPERVISE,
            "listen for `procwrap ctl` on this Unix socket (created 0600); the same twin "
            "tells `procwrap ctl` where to connect"),
    _Option(("--skip",), "NAMES", _opt_names, [], _SUPERVISE,
            "leave out the init entries and processes with these names (comma-separated)",
            repeat=True),
    _Option(("--kill-on-second-signal",), None, None, False, _BOTH,
            "a second TERM/INT while stopping sends SIGKILL at once instead of waiting "
            "out the grace period"),
    _Option(("--signal-map",), "FROM:TO,...", _opt_signal_map, None, _BOTH,
            "act on each signal FROM as if TO had come (dumb-init's --rewrite): TERM:INT "
            "makes `docker stop` an INT; HUP: drops HUP"),
    _Option(("--single-child",), None, None, False, _WRAP,
            "forward signals to the child alone, not to its process group (the final "
            "SIGKILL and the cleanup after it exits still take the group)"),
    _Option(("--stop-signal",), "SIGNAL", _opt_signal, signal.SIGTERM, _WRAP,
            "send this instead of TERM when asked to stop (default TERM)"),
    _Option(("--stop-timeout",), "SECONDS", _opt_seconds, STOP_TIMEOUT, _WRAP,
            "grace after the stop signal before SIGKILL to the group (default 10)"),
    _Option(("--timeout",), "SECONDS", _opt_seconds, None, _WRAP,
            "stop an attempt that runs longer (stop signal, grace, SIGKILL); exit 124"),
    _Option(("--retries",), "N", _opt_count, 0, _WRAP,
            "run again up to N times while the status is a failure (default 0)"),
    _Option(("--retry-delay",), "SECONDS", _opt_seconds, RETRY_DELAY, _WRAP,
            "wait before the first retry (default 1)"),
    _Option(("--retry-backoff",), "FACTOR", _opt_factor, BACKOFF_FACTOR, _WRAP,
            "multiply the delay by this after each retry (default 2)"),
    _Option(("--retry-max-delay",), "SECONDS", _opt_seconds, BACKOFF_MAX, _WRAP,
            "never wait longer than this between attempts (default 60)"),
    _Option(("--retry-jitter",), "FRACTION", _opt_fraction, RETRY_JITTER, _WRAP,
            "shorten each delay by a random part up to this fraction (default 0.1)"),
    _Option(("--success-codes",), "CODES", _opt_codes, (0,), _WRAP,
            "exit codes that are not failures, comma-separated (default 0)"),
    _Option(("--wait-group",), None, None, False, _WRAP_ONLY,
            "when the child exits, wait for the rest of its process group instead of "
            "sending it SIGTERM"),
    _Option(("--workdir",), "DIR", _opt_text, None, _WRAP, "run the command in DIR"),
    _Option(("--user",), "USER[:GROUP]", _opt_text, None, _WRAP,
            "run the command as USER (name or uid) and GROUP; needs root (remote: on the "
            "host, where the agent is root)"),
    _Option(("--env-file",), "PATH", _opt_text, [], _BOTH,
            "add the variables of a dotenv file (repeatable; twin: comma-separated); for a "
            "Procfile, instead of its .env",
            repeat=True),
    _Option(("--env",), "NAME=VALUE", _opt_assignment, [], _WRAP,
            "set a variable for the command (repeatable; twin: one per line)", repeat=True),
    _Option(("--env-pass",), "PATTERNS", _opt_names, [], _WRAP_ONLY,
            "pass only the variables of procwrap's environment matching these globs "
            "(comma-separated; the config's env.pass); name a credential procwrap used "
            "(VAULT_TOKEN, AWS keys) exactly to pass it", repeat=True),
    _Option(("--ssh-option",), "OPTION", _opt_text, [], _REMOTE,
            "pass -o OPTION to ssh (repeatable); the user's ssh_config applies as well",
            repeat=True),
    _Option(("--python",), "PATH", _opt_text, "python3", _REMOTE,
            "the Python 3.6+ to run procwrap's agent with on the remote hosts"),
    _Option(("--parallel",), "N", _opt_count, 16, _REMOTE,
            "at most N hosts at once (default 16)"),
    _Option(("--via",), "HOST[,HOST...]", _opt_text, None, _REMOTE,
            "reach the hosts through these bastions, in order ([user@]host[:port] each; "
            "--ssh-option applies to them too)"),
    _Option(("--sudo",), "USER", _opt_text, None, _REMOTE,
            "run the remote side as USER through `sudo -n` (no password prompt: sudoers must "
            "let the ssh user run the Python as USER without one)"),
    _Option(("--sudo-password-env",), "VAR", _opt_text, None, _REMOTE,
            "with --sudo: the password sudo asks for is in variable VAR (given to sudo's "
            "prompt, never in argv or logs)"),
    _Option(("--keepalive",), "SECONDS", _opt_seconds, REMOTE_KEEPALIVE, _REMOTE,
            "a link silent this long is dead, and the remote command with it (default %s)"
            % _format_seconds(REMOTE_KEEPALIVE)),
    _Option(("--env-locations",), "LOCATION", _opt_location, [], _BOTH,
            "merge the dictionary of variables at LOCATION into the environment "
            "(repeatable, later ones win; dotenv unless the location says otherwise; "
            "twin: comma-separated)", repeat=True),
    _Option(("--merge-strategy",), "STRATEGY", _opt_choice(MERGE_STRATEGIES), "SHALLOW", _BOTH,
            "how --env-locations documents merge: " + ", ".join(MERGE_STRATEGIES)
            + " (default SHALLOW)"),
    _Option(("--resolve-suffix",), "SUFFIX", _opt_suffix, RESOLVE_SUFFIX, _BOTH,
            "NAME<SUFFIX>=LOCATION becomes NAME=<value> for children (default "
            + RESOLVE_SUFFIX + "; " + PROC_WRAPPER_SUFFIX + " always works)"),
    _Option(("--resolve-depth",), "N", _opt_count, RESOLVE_DEPTH, _BOTH,
            "follow a resolved value that is itself a location up to N times (default 3)"),
    _Option(("--allow-unresolved",), None, None, False, _BOTH,
            "start without a variable whose location cannot be fetched (a warning names "
            "it) instead of exiting 69"),
    _Option(("--env-output-file",), "PATH", _opt_text, None, _BOTH,
            "also write the resolved variables to PATH (JSON for .json, else dotenv), "
            "created 0600 and removed when procwrap exits"),
    _Option(("--secrets-ttl",), "SECONDS", _opt_seconds, None, _BOTH,
            "resolve secrets again before a retry or restart that comes this long after "
            "the last resolution"),
    _Option(("--vault-renew-failure",), "POLICY", _opt_choice(VAULT_RENEW_POLICIES), "stop",
            _BOTH, "when a Vault lease or token cannot be renewed before it expires: stop "
            "(everything, exit 69) or continue (log it) (default stop)"),
    _Option(("--log-secrets",), None, None, False, _BOTH,
            "debugging only: log resolved values instead of [secret]"),
    # Status updates and reporting (a supervisor reports the processes that
    # name a task); proc_wrapper's PROC_WRAPPER_* variables are read too (the
    # PROCWRAP_ twins win): see _API_SETTINGS.
    _Option(("--status-updates",), None, None, None, _WRAP_ONLY,
            "listen for status updates from the command (UDP on 127.0.0.1; the command is "
            "told where, as proc_wrapper tells it)"),
    _Option(("--status-update-port",), "PORT", _opt_port, None, _WRAP_ONLY,
            "the port of --status-updates (default %d, proc_wrapper's; 0: any free one)"
            % STATUS_UPDATE_PORT),
    _Option(("--status-update-interval",), "SECONDS", _opt_seconds, None, _REPORT,
            "report status updates to the API server at most once per SECONDS (default: "
            "the first at once, the rest with heartbeats)"),
    _Option(("--api-key",), "KEY", _opt_text, None, _REPORT,
            "report this run to the API server with this key (a secret: never logged, never "
            "passed to the command); without it nothing is sent"),
    _Option(("--api-base-url",), "URL", _opt_text, None, _REPORT,
            "the API server (default https://api.cloudreactor.io)"),
    _Option(("--task-name",), "NAME", _opt_text, None, _WRAP_ONLY, "the task this run is of"),
    _Option(("--task-uuid",), "UUID", _opt_text, None, _WRAP_ONLY, "the task, by its UUID"),
    _Option(("--task-execution-uuid",), "UUID", _opt_text, None, _WRAP_ONLY,
            "an execution the server created already: update it rather than create one"),
    _Option(("--deployment",), "NAME", _opt_text, None, _REPORT,
            "the deployment (run environment) name"),
    _Option(("--auto-create-task",), None, None, None, _WRAP_ONLY,
            "let the server create the task if it does not know it"),
    _Option(("--auto-create-task-props",), "JSON", _env_json_object, None, _WRAP_ONLY,
            "more properties of an auto-created task (a JSON object)"),
    _Option(("--api-heartbeat-interval",), "SECONDS", _opt_seconds, None, _REPORT,
            "seconds between heartbeats (default 300; 0: none)"),
    _Option(("--api-request-timeout",), "SECONDS", _opt_seconds, None, _REPORT,
            "seconds one request may take (default 30)"),
    _Option(("--api-error-timeout",), "SECONDS", _opt_seconds, None, _REPORT,
            "keep retrying a failed request (network, 429, 502-504) this long (default 300)"),
    _Option(("--api-retry-delay",), "SECONDS", _opt_seconds, None, _REPORT,
            "seconds between those retries when the server names none (default 120)"),
    _Option(("--api-creation-timeout",), "SECONDS", _opt_seconds, None, _REPORT,
            "keep retrying the start this long (default 1800)"),
    _Option(("--api-conflict-timeout",), "SECONDS", _opt_seconds, None, _REPORT,
            "a 409 at the start (the task's concurrency limit): keep trying this long, then "
            "exit 75 without starting the command (default 300)"),
    _Option(("--api-conflict-retry-delay",), "SECONDS", _opt_seconds, None, _REPORT,
            "seconds between those tries (default 120)"),
    _Option(("--api-final-update-timeout",), "SECONDS", _opt_seconds, None, _REPORT,
            "keep retrying the final update this long (default 1800)"),
    _Option(("--api-log-lines",), "N", _opt_count, None, _REPORT,
            "on failure, send the last N lines of the command's output (default 25; needs "
            "--log-format: pass-through output is never read by procwrap)"),
    _Option(("--prevent-offline-execution",), None, None, None, _REPORT,
            "do not start the command when the API server cannot be told (exit 77 after a "
            "403, else 69)"),
    _Option(("--offline-mode",), None, None, None, _REPORT,
            "send nothing, whatever else says so"),
    _Option(("--send-hostname",), None, None, None, _REPORT,
            "send this machine's name with the start"),
    _Option(("--send-pid",), None, None, None, _REPORT, "send procwrap's pid with the start"),
    _Option(("--failure-webhook",), "URL", _opt_text, None, _REPORT,
            "POST a JSON summary of a failed run to URL"),
    _Option(("--rollbar-access-token",), "TOKEN", _opt_text, None, _REPORT,
            "report a failed run to Rollbar's item API (a secret)"),
    _Option(("--rollbar-url",), "URL", _opt_text, None, _REPORT,
            "Rollbar's item API (default https://api.rollbar.com/api/1/item/)"),
    # Limits across machines, through etcd (wrap mode; `procwrap locks` reads them).
    _Option(("--lock",), "NAME", _opt_text, None, _WRAP_ONLY,
            "run only while holding one of --max-concurrency slots of NAME, across every "
            "machine that uses the same etcd (needs --etcd)"),
    _Option(("--max-concurrency",), "N", _opt_count, 1, _LOCKS,
            "slots of --lock: at most N commands at once (default 1)"),
    _Option(("--etcd",), "URL[,URL...]", _opt_text, None, _LOCKS,
            "etcd's client URLs (tried in turn)"),
    _Option(("--lock-prefix",), "PREFIX", _opt_text, LOCK_PREFIX, _LOCKS,
            "where the slots' keys live in etcd (default %s)" % LOCK_PREFIX),
    _Option(("--lock-ttl",), "SECONDS", _opt_seconds, LOCK_TTL, _WRAP_ONLY,
            "a slot's lease: freed this long after procwrap is gone (default %s; kept "
            "alive every third of it)" % _format_seconds(LOCK_TTL)),
    _Option(("--lock-timeout",), "SECONDS", _opt_seconds, None, _WRAP_ONLY,
            "wait at most this long for a slot, then exit 75 without starting the command "
            "(0: do not wait; default: wait for as long as it takes)"),
    _Option(("--on-lock-loss",), "stop|wait", _opt_choice(("stop", "wait")), "stop",
            _WRAP_ONLY, "the slot is lost while the command runs: stop it and exit 75 (stop, "
            "the default), or stop it, wait for a slot again and start it again (wait)"),
    _Option(("--etcd-unavailable",), "fail|run", _opt_choice(("fail", "run")), "fail",
            _WRAP_ONLY, "etcd cannot be reached: exit 69 (fail, the default) or run without "
            "the lock, with a warning (run)"),
    _Option(("--etcd-user",), "NAME", _opt_text, None, _LOCKS, "etcd's user"),
    _Option(("--etcd-password",), "LOCATION", _opt_location, None, _LOCKS,
            "where its password is (a location: ENV:VAR, FILE:PATH, ...; never the password "
            "itself)"),
    _Option(("--etcd-cacert",), "PATH", _opt_text, None, _LOCKS,
            "CA bundle etcd's certificate is checked against"),
    _Option(("--etcd-cert",), "PATH", _opt_text, None, _LOCKS, "client certificate for etcd"),
    _Option(("--etcd-key",), "PATH", _opt_text, None, _LOCKS, "its key"),
]


_OPTION_INDEX = dict((flag, option) for option in _OPTIONS for flag in option.flags)
_OPTION_BY_DEST = dict((option.dest, option) for option in _OPTIONS)
#: First words that mean procwrap, not a program (see _parse_args).
_SLIPS = dict([("help", "--help"), ("version", "--version")] + [
    (name, "ctl " + name) for name in ("status", "start", "stop", "restart", "signal", "tail",
                                       "reload", "shutdown")])
#: proc_wrapper's variables for options of wrap mode's own (SPECS.md 10.4),
#: read when neither the flag nor its PROCWRAP_ twin is given.
_PROC_WRAPPER_TWINS = (
    ("retries", "PROC_WRAPPER_TASK_MAX_RETRIES"),
    ("timeout", "PROC_WRAPPER_PROCESS_TIMEOUT_SECONDS"),
    ("retry_delay", "PROC_WRAPPER_PROCESS_RETRY_DELAY_SECONDS"),
    ("stop_timeout", "PROC_WRAPPER_PROCESS_TERMINATION_GRACE_PERIOD_SECONDS"),
    ("workdir", "PROC_WRAPPER_WORK_DIR"),
)

#: Every PROCWRAP_* variable procwrap reads: the twins, and what a supervisor
#: tells its children (a nested procwrap sees them too).
_TWINS = set(option.env for option in _OPTIONS) | set([
    "PROCWRAP_CTL_SOCKET", "PROCWRAP_STATUS_ADDRESS", "PROCWRAP_PROCESS", "PROCWRAP_SCRIPT",
    "PROCWRAP_SERVICE_ACCOUNT_DIR"])


_TRUE = ("1", "true", "yes", "on")

_FALSE = ("0", "false", "no", "off", "")


def _usage():
    """The --help text, generated from _OPTIONS and the module docstring."""
    lines = [
        "usage: procwrap [OPTIONS] [--] CMD [ARGS...]   wrap one command",
        "       procwrap -c FILE [OPTIONS]               supervise many (a container's PID 1)",
        "       procwrap -c Procfile [-m web=2,...]      run a Procfile (as honcho, foreman)",
        "       procwrap check -c FILE                   validate a config and exit",
        "       procwrap convert supervisord.conf [-o FILE]  a supervisord.conf as a config",
        "       procwrap wait [--timeout SECONDS] [URL]  until a procwrap's /readiness is 200",
        "       procwrap remote [OPTIONS] HOST[,HOST...] [--] CMD [ARGS...]",
        "                                                run a command on hosts over ssh",
        "       procwrap locks NAME --etcd URL           who holds a --lock's slots, who waits",
        "       procwrap ctl COMMAND [ARGS]              control a running supervisor "
        "(see ctl --help)",
        "       procwrap install [PREFIX]                write the module, its bytecode and "
        "a launcher (see install --help)",
        "",
        "A subcommand's name shadows a program of the same name (check, remote, locks, ctl,",
        "install, convert, wait; help, version, status, start, stop... are taken for slips): "
        "`procwrap -- NAME ...`",
        "always runs the program NAME.",
        "",
        "options (each also read from its environment twin; the command line wins):",
    ]
    for option in _OPTIONS:
        head = ", ".join(option.flags) + (" " + option.metavar if option.metavar else "")
        mode = {"wrap": " [wrap]", "supervise": " [supervise]", "remote": " [remote]"}.get(
            option.modes[0], "") if len(option.modes) < 3 else ""
        lines.append("  %s%s" % (head, mode))
        lines.append("        %s" % option.help)
        lines.append("        env: %s" % option.env)
    lines += ["  -h, --help        show this help", "  --version         print the version",
              "", __doc__.split("Exit status:", 1)[1].split("Contents:", 1)[0].rstrip().join(
                  ("exit status:", ""))]
    return "\n".join(lines) + "\n"


def _parse_args(argv, environ):
    """(subcommand, options dict, command, flags given on the command line,
    warnings: PROCWRAP_* variables that are not twins)."""
    # The command line first; then each twin fills in what the command line
    # left unset (tini's and dumb-init's order: a flag typed now beats an
    # environment set long ago).  A repeatable option adds up; any other
    # given twice is an error, not a silent last-one-wins.
    options = dict((o.dest, list(o.default) if o.repeat else o.default) for o in _OPTIONS)
    given, warnings = {}, []
    subcommand = None
    index = 0
    if argv and argv[0] in ("check", "remote", "locks"):
        subcommand, index = argv[0], 1
    command = []
    dashed = False          #: the command came after `--`: a program, whatever its name
    if subcommand == "locks" and argv[1:2] and not argv[1].startswith("-"):
        command, index = [argv[1]], 2   # locks NAME [OPTIONS]: the name, then options
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            command = command + argv[index + 1:]
            dashed = True
            break
        if not arg.startswith("-") or arg == "-":
            command = command + argv[index:]    # the first word that is no option: the command
            break
        if arg in ("-h", "--help"):
            return "help", options, [], given, warnings
        if arg == "--version":
            return "version", options, [], given, warnings
        name, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        option = _OPTION_INDEX.get(name)
        if option is None:
            raise UsageError(UNKNOWN_OPTION_MSG % (name, _did_you_mean(name, _OPTION_INDEX)))
        if option.metavar is None:
            if equals:
                raise UsageError("%s: takes no value; drop '=%s'" % (name, value))
            options[option.dest] = True
        else:
            if not equals:
                index += 1
                if index >= len(argv):
                    raise UsageError(NEEDS_VALUE_MSG % (name, option.metavar))
                value = argv[index]
            parsed = option.parse(value, name)
            if option.repeat:
                options[option.dest] = options[option.dest] + (
                    parsed if isinstance(parsed, list) else [parsed])
            elif option.dest in given:
                raise UsageError("%s: given twice; give it once (the two would not merge)"
                                 % name)
            else:
                options[option.dest] = parsed
        given[option.dest] = name
        index += 1
    for option in _OPTIONS:
        text = environ.get(option.env)
        if option.dest in given or text is None:
            continue
        if option.metavar is None:
            if text.strip().lower() not in _TRUE + _FALSE:
                raise UsageError(BAD_VALUE_MSG % (option.env, "expected 1/true/yes or "
                                                  "0/false/no", text))
            options[option.dest] = text.strip().lower() in _TRUE
        elif option.repeat:
            # PROCWRAP_ENV holds NAME=VALUE lines (a value may hold a comma);
            # the other lists are comma-separated, quotes and brackets kept.
            parts = text.split("\n") if option.dest == "env" else _split_list(text)
            for part in parts:
                if part.strip():
                    parsed = option.parse(part.strip(), option.env)
                    options[option.dest] += parsed if isinstance(parsed, list) else [parsed]
        elif text.strip():
            options[option.dest] = option.parse(text.strip(), option.env)
    # proc_wrapper's names for what wrap mode does itself, last (a drop-in:
    # its deployments set only PROC_WRAPPER_*); negative means none there.
    for dest, name in _PROC_WRAPPER_TWINS:
        text = environ.get(name, "").strip()
        if text and dest not in given and _OPTION_BY_DEST[dest].env not in environ:
            value = _env_seconds(text, name) if dest != "workdir" else text
            if value is not None:
                options[dest] = _OPTION_BY_DEST[dest].parse(
                    text if dest == "workdir" else _format_seconds(value), name)
    # `procwrap help` or `procwrap status` is a slip more often than a program
    # of that name: say what was meant (`procwrap -- status` runs the program).
    if subcommand is None and command and not dashed and command[0] in _SLIPS:
        word = command[0]
        raise UsageError("%s: did you mean `procwrap %s`?  To run a program named %s, write "
                         "`procwrap -- %s`" % (word, _SLIPS[word], word, " ".join(command)))
    # A PROCWRAP_* that is no twin is a typo more often than not: say so
    # (warn, not fail: an older procwrap may share the environment).
    for name in sorted(environ):
        if name.startswith("PROCWRAP_") and name not in _TWINS:
            warnings.append(UNKNOWN_VARIABLE_MSG % (name, _did_you_mean(name, _TWINS)))
    return subcommand, options, command, given, warnings


def _split_list(text):
    """A twin's comma-separated list; a comma inside quotes, brackets or braces
    does not split, so PLAIN:{"a":1,"b":2}!json stays one location."""
    parts, start, depth, quote = [], 0, 0, None
    for index, char in enumerate(text):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _wrap_spec(options, command, environ, secrets, remote=False):
    """The ProcessSpec wrap mode runs, from the options; its secrets resolved.
    `remote`: the command runs elsewhere (--workdir is not looked for here)."""
    user = None
    if options["user"] and remote:
        # Resolved by the agent, on the host whose users it names.
        if _os_text_problem(options["user"]):
            raise UsageError("--user: " + _os_text_problem(options["user"]))
        user = _User(options["user"], None, None, None, None)
    elif options["user"]:
        user = _resolve_user(options["user"], "--user")
        if os.geteuid() not in (0, user.uid):
            raise UsageError("--user: " + NEED_ROOT_MSG % os.geteuid())
    workdir = options["workdir"]
    if workdir and not remote and not os.path.isdir(workdir):
        raise UsageError("--workdir: " + NOT_A_DIR_MSG % workdir)

    def make_env():
        """procwrap's environment and resolved variables, then --user, --env-file, --env."""
        secrets.begin()
        checker = _Checker()
        builder = _EnvBuilder(environ, options["env_pass"] or None, secrets, checker)
        here = None if remote else user     # a remote user's HOME is the agent's to set
        env, _ = _compose_env(builder, checker, here,
                              [(path, "--env-file") for path in options["env_file"]], [],
                              options["env"], "--env", expand=False)
        if checker.problems:
            raise ConfigError(checker.problems)
        if options["env_output_file"]:
            secrets.write_output(options["env_output_file"], here)
        return env

    capture = (options["log_format"] or "none") != "none"
    return _ProcessSpec(
        name=os.path.basename(command[0]) or "main", where="command", argv=list(command),
        env=make_env(), workdir=workdir, user=user, stop_signal=options["stop_signal"],
        stop_timeout=options["stop_timeout"], timeout=options["timeout"],
        restart="OnFailure" if options["retries"] else "Never",
        success_codes=options["success_codes"], restart_limit=options["retries"],
        backoff_initial=options["retry_delay"], backoff_factor=options["retry_backoff"],
        backoff_max=options["retry_max_delay"], backoff_jitter=options["retry_jitter"],
        backoff_reset=float("inf"), capture=capture, keep_group=options["wait_group"],
        single_child=options["single_child"],
        tty=not capture and _isatty(0), labels={}, make_env=make_env,
        secrets_ttl=options["secrets_ttl"])


def _print(text):
    """Write to stdout as UTF-8 whatever the locale: under LC_ALL=C, CPython 3.6
    encodes stdout as ASCII and would fail on a child's 'é' (3.7 coerces C to
    UTF-8, PEP 538)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:          # replaced by something without bytes (embedding)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    buffer.write(text.encode("utf-8", "surrogateescape"))
    buffer.flush()


def _ensure_stdio():
    """Open /dev/null on any of fds 0-2 that is closed, so pipes never land there."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _ctl(argv, environ):
    """`procwrap ctl ...`: its command line checked against CTL_COMMANDS, then
    one request to a supervisor's control socket (_ctl_send)."""
    path, as_json, follow, lines = environ.get("PROCWRAP_CTL_SOCKET"), False, False, 10
    words, config, socket_given = [], None, False
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-h", "--help"):
            _print(_ctl_usage())
            return EX_OK
        if arg in ("--socket", "-c", "--config") or arg.startswith(("--socket=", "--config=")):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            else:
                index += 1
                if index >= len(argv):
                    raise UsageError(NEEDS_VALUE_MSG % (arg, "PATH" if arg == "--socket"
                                                        else "FILE"))
                value = argv[index]
            if arg.startswith("--socket"):
                path, socket_given = value, True
            else:
                config = value
        elif arg == "--json":
            as_json = True
        elif arg == "-f" and words[:1] in (["tail"], ["maintail"]):
            follow = True
        elif arg == "-n" and words[:1] in (["tail"], ["maintail"]):
            index += 1
            if index >= len(argv) or not _is_digits(argv[index]) \
                    or int(argv[index]) > (1 << 31) - 1:
                raise UsageError(BAD_VALUE_MSG % ("ctl %s -n" % words[0], "expected a number "
                                                  "of lines", argv[index] if index < len(argv)
                                                  else ""))
            lines = int(argv[index])
        elif arg.startswith("-") and not (words[:1] == ["signal"] and len(words) == 1):
            raise UsageError("ctl: unknown option %r; see procwrap ctl --help" % arg)
        else:
            words.append(arg)
        index += 1
    if not words:
        raise UsageError("ctl: no command; see procwrap ctl --help")
    if words[0] not in _CTL_ARGS:
        raise UsageError("ctl: unknown command %r%s; see procwrap ctl --help"
                         % (words[0], _did_you_mean(words[0], _CTL_ARGS)))
    problem = _ctl_check(words)
    if problem:
        raise UsageError("ctl %s: %s; see procwrap ctl --help" % (words[0], problem))
    if config is not None:
        if socket_given:
            raise UsageError("ctl: give --socket PATH or -c FILE, not both")
        path = _ctl_socket_of(config)
    if not path:
        raise UsageError("ctl: no socket; give --socket PATH, -c FILE (its ctlSocket) or set "
                         "PROCWRAP_CTL_SOCKET to the supervisor's --ctl-socket")
    request = {"command": words[0], "args": words[1:], "follow": follow, "lines": lines}
    return _ctl_send(path, request, as_json)


def _ctl_socket_of(config):
    """ctl -c FILE: the ctlSocket of that config."""
    if _is_procfile(config):
        raise UsageError("ctl -c %s: a Procfile has no ctlSocket; give --socket PATH (the "
                         "--ctl-socket procwrap was started with)" % config)
    settings = (_load_fragments if os.path.isdir(config) else _load_config)(config, "ctl -c")
    path = settings.get("ctlSocket") if isinstance(settings, dict) else None
    if not isinstance(path, str) or not path:
        raise UsageError("ctl -c %s: it has no ctlSocket; give --socket PATH (the "
                         "--ctl-socket procwrap was started with)" % config)
    return path


def _ctl_send(path, request, as_json):
    """Send one ctl request; print the answers (as text or JSON lines); the exit status."""
    import json
    import socket
    command = request["command"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        raise UnavailableError("ctl: cannot connect to %s: %s; is procwrap running with "
                               "--ctl-socket %s?" % (path, error.strerror, path))
    sock.sendall((json.dumps(request) + "\n").encode("utf-8"))
    stream = sock.makefile("rb")
    status = EX_OK
    try:
        for raw in stream:
            answer = json.loads(raw.decode("utf-8"))
            if as_json:
                _print(json.dumps(answer, sort_keys=True) + "\n")
            elif "results" in answer:         # one line a process, in the order named
                for result in answer["results"]:
                    if result["ok"]:
                        _print("%s: %s\n" % (result["name"], result["message"]))
                    else:
                        sys.stderr.write(ERROR_MSG % ("ctl %s: %s" % (command, result[
                            "error"])) + "\n")
            elif answer.get("ok") is not False:
                _print(_ctl_text(command, answer))
            if answer.get("ok") is False:
                if answer.get("usage"):
                    raise UsageError("ctl %s: %s" % (command, answer["error"]))
                if not as_json and "results" not in answer:
                    sys.stderr.write(ERROR_MSG % ("ctl %s: %s" % (command, answer["error"]))
                                     + "\n")
                status = 1
    except KeyboardInterrupt:
        pass                            # tail -f ends with ^C
    except BrokenPipeError:
        # Our reader went away (`| head`): stop quietly, as a pipeline expects.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        sock.close()
    return status


def _ctl_text(command, answer):
    """An answer as a person reads it."""
    if command == "status":
        rows = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")]
        for p in answer["processes"]:
            note = p["description"] or "-"
            lock = p.get("lock")
            if lock and not lock["held"] and lock["holders"]:
                note = "standby: %s held by %s" % (lock["name"], ", ".join(
                    str(holder["host"]) for holder in lock["holders"]))
            rows.append((p["name"], p["state"], str(p["pid"] or "-"),
                         _format_seconds(p["uptime"]) + "s" if p["uptime"] else "-",
                         str(p["restarts"]), note))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                       + "  " + row[5] + "\n" for row in rows)
    if command in ("tail", "maintail"):
        return "".join(line + "\n" for _, line in answer["lines"])
    if command == "pid":
        return "%d\n" % answer["pid"]
    if command == "reload":
        return "reloaded: added %s; removed %s; changed %s\n" % tuple(
            ", ".join(answer[key]) or "none" for key in ("added", "removed", "changed"))
    if "name" in answer:
        return "%s: %s\n" % (answer["name"], answer["state"])
    return answer.get("message", "ok") + "\n"


class _Settings(object):
    """One run's settings in one record: the options (the command line, then
    their environment twins) and, for a supervisor, its config's top-level
    settings under them.  settings[key] is the option when given, else the
    config's; where(key) names the flag, twin or config field it came from."""

    #: option -> (the config's setting it stands over, the config's field name)
    OVER = {"log_format": ("format", "logs.format"),
            "log_merge_json": ("merge_json", "logs.mergeJson"),
            "log_max_line": ("max_line", "logs.maxLineBytes"),
            "http": ("http", "http"), "readiness_file": ("readiness_file", "readinessFile"),
            "status_port": ("status_port", "statusPort"), "ctl_socket": ("ctl_socket", "ctlSocket")}

    def __init__(self, options, given):
        self.options = options          #: dest -> value, defaults filled in
        self.given = given              #: dest -> the flag or twin that gave it
        self.config = {}                #: the config's settings, once read
        self.procfile = False           #: the config is a Procfile (-c Procfile, --procfile)

    def __getitem__(self, key):
        """The option when set, else the config's setting it stands over."""
        value = self.options[key]
        # Unset: None, or False for a flag; 0 for --log-max-line, which
        # means 'the default' (0 == False, so identity, not `in`).
        unset = value is None or value is False or (key == "log_max_line" and value == 0)
        if key in self.OVER and unset:
            return self.config.get(self.OVER[key][0], value)
        return value

    def where(self, key):
        """The flag, twin or config field that `key`'s value came from."""
        if key in self.given:
            return self.given[key]
        if key in self.OVER and self.OVER[key][0] in self.config:
            return self.OVER[key][1]
        return _OPTION_INDEX["--" + key.replace("_", "-")].env

    def health(self):
        """A supervisor's health and control settings, with where each came from."""
        keys = ("http", "readiness_file", "status_port", "ctl_socket")
        found = dict((key, self[key]) for key in keys)
        found["where"] = dict((key, self.where(key)) for key in keys)
        return found


def _run(argv, environ, redact):
    """main() without the error handling: parse, pick the mode, run it."""
    if argv[:1] == ["ctl"]:
        return _ctl(argv[1:], environ)
    if argv[:1] == ["install"]:
        return _install(argv[1:])
    if argv[:1] == ["convert"]:
        return _convert(argv[1:], environ)
    if argv[:1] == ["wait"]:
        return _wait(argv[1:])
    subcommand, options, command, given, warnings = _parse_args(argv, environ)
    for warning in warnings:
        sys.stderr.write(WARNING_MSG % warning + "\n")
    if subcommand == "help":
        _print(_usage())
        return EX_OK
    if subcommand == "version":
        _print("procwrap %s\n" % __version__)
        return EX_OK
    if options["procfile"]:
        if "config" in given:
            raise UsageError("--procfile: give -c FILE or --procfile FILE, not both")
        options["config"], given["config"] = options["procfile"], given.get(
            "procfile", "PROCWRAP_PROCFILE")
    if subcommand in ("check", "remote", "locks"):
        mode = subcommand
    elif command and "config" in given:
        raise UsageError("give either a command to wrap or -c FILE to supervise, not both")
    elif command:
        mode = "wrap"
    elif options["config"]:
        mode = "supervise"
    else:
        raise UsageError(NO_COMMAND_MSG)
    for dest, flag in sorted(given.items()):
        option = _OPTION_INDEX[flag]
        if mode not in option.modes:
            raise UsageError(MODE_OPTION_MSG % (flag, option.modes[0], {
                "supervise": "use -c FILE", "remote": "use procwrap remote HOST -- CMD"}.get(
                    option.modes[0], "give a command")))
    if mode == "check" and command:
        raise UsageError("check: unexpected arguments %r; use procwrap check -c FILE"
                         % " ".join(command))
    if mode == "check" and not options["config"]:
        raise UsageError("check: needs -c FILE (or PROCWRAP_CONFIG)")

    procfile = mode in ("supervise", "check") and (
        bool(options["procfile"]) or bool(options["config"]) and _is_procfile(options["config"]))
    for dest in ("port", "formation", "keep_going", "env_file"):
        if dest in given and mode in ("supervise", "check") and not procfile:
            raise UsageError("%s: applies to a Procfile; a config sets it on each entry%s"
                             % (given[dest], " (envFile)" if dest == "env_file" else ""))
    _ensure_stdio()
    settings = _Settings(options, given)
    settings.procfile = procfile
    secrets = (_CheckingSecrets if mode == "check" else _Secrets)(
        environ, suffix=options["resolve_suffix"], depth=options["resolve_depth"],
        locations=options["env_locations"], strategy=options["merge_strategy"],
        allow_unresolved=options["allow_unresolved"], ttl=options["secrets_ttl"], redact=redact)
    redact.enabled = not options["log_secrets"]
    run_mode = {"wrap": _run_wrap, "check": _run_check, "supervise": _run_supervise,
                "remote": _run_remote, "locks": _run_locks}[mode]
    try:
        return run_mode(settings, command, environ, secrets)
    finally:
        if secrets.written is not None:
            secrets.written.remove()


def _new_log(settings, environ, fmt, redact, quiet=False):
    """The run's _Log: its format and how text looks (--color, NO_COLOR,
    FORCE_COLOR, --log-timestamps, --log-labels)."""
    color = {"always": True, "never": False}.get(settings["color"])
    if color is None and environ.get("NO_COLOR"):
        color = False
    elif color is None and environ.get("FORCE_COLOR", "") not in ("", "0", "false"):
        color = True
    return _Log(fmt, merge_json=settings["log_merge_json"], redact=redact, quiet=quiet,
                color=color, timestamps=settings["log_timestamps"],
                labels=settings["log_labels"])


def _run_wrap(settings, command, environ, secrets):
    """Wrap mode: one command."""
    spec = _wrap_spec(settings.options, command, environ, secrets)
    log = _new_log(settings, environ, settings["log_format"] or "none", secrets.redact)
    owner = _Wrapper(spec, log, settings["log_max_line"] or MAX_LINE_BYTES,
                     settings["kill_on_second_signal"], signal_map=settings["signal_map"])
    api = _reporting_options(settings, environ, secrets)
    if api["reporting"] or api["status_updates"] or api["failure_webhook"] \
            or api["rollbar_access_token"]:
        import socket
        api.update(timeout=spec.timeout, retries=settings["retries"],
                   retry_delay=settings["retry_delay"], stop_timeout=spec.stop_timeout)
        owner.reporter = _ApiReporter(owner.loop, log, api, spec.argv, hostname=(
            socket.gethostname() if api["send_hostname"] else None),
            pid=os.getpid() if api["send_pid"] else None)
    if settings["lock"] or settings["etcd"]:
        owner.lock = _wrap_lock(settings, secrets, owner.loop, log)
        owner.lock_optional = settings["etcd_unavailable"] == "run"
        owner.lock_timeout = settings["lock_timeout"]
        owner.lock_loss = settings["on_lock_loss"]
    if api["status_updates"]:
        port = api["status_update_port"]
        try:
            listener = _StatusSocket(owner.loop, port, owner.reporter.status_update)
        except OSError as error:
            raise UsageError("--status-update-port: cannot listen on 127.0.0.1:%d: %s; pick "
                             "another port (0: any free one)" % (port, error.strerror))
        owner.process.environment.override(_status_update_env(listener.port))

        def close():
            if listener.bad:        # counted, not logged one by one (a flood)
                log.event("%d status-update messages could not be used (not UTF-8 JSON "
                          "objects, or over %d bytes)" % (listener.bad, STATUS_UPDATE_MAX),
                          "warning", event="status-rejected", count=listener.bad)
            listener.close()
        owner.closers.append(close)
    return _run_owner(owner, log, settings, secrets)


def _run_remote(settings, command, environ, secrets):
    """procwrap remote: the command on each host, with wrap mode's rules."""
    if not command or command[0] == "--":
        raise UsageError("remote: no host; give HOST[,HOST...] -- CMD")
    try:
        hosts = _value_hosts(command[0])
    except _BadValue as error:
        raise UsageError("remote: HOST: " + error.message(command[0]))
    command = command[2:] if command[1:2] == ["--"] else command[1:]
    if not command:
        raise UsageError("remote: no command; give HOST[,HOST...] -- CMD [ARGS...]")
    if len(set(hosts)) != len(hosts):
        raise UsageError("remote: a host is named twice; name each once")
    options = dict(settings.options, log_format=settings["log_format"] or "text")
    spec = _wrap_spec(options, command, environ, secrets, remote=True)
    via = [hop.strip() for hop in (settings["via"] or "").split(",") if hop.strip()]
    password = None
    if settings["sudo_password_env"]:
        name = settings["sudo_password_env"]
        password = environ.get(name)
        if not settings["sudo"]:
            raise UsageError("--sudo-password-env: applies with --sudo USER; give it too")
        if password is None:
            raise UsageError("--sudo-password-env: %s is not set; export it, or drop the option"
                             % name)
        secrets.redact.add(password)
    remotes = [_Remote(host, settings["ssh_option"], settings["python"], settings["keepalive"],
                       settings["sudo"], via, password) for host in hosts]
    shown = [remote.host for remote in remotes]
    for remote in remotes:
        if shown.count(remote.host) > 1:
            remote.host = remote.address    # two users or ports of one host: say which
    specs = [_ProcessSpec(**dict(
        vars(spec), name=remote.host, where="remote", labels={"host": remote.host},
        capture=True, tty=False)) for remote in remotes]
    log = _new_log(settings, environ, options["log_format"], secrets.redact,
                   quiet=settings["log_format"] is None)
    log.width = max(len(remote.host) for remote in remotes)     # text: hosts line up
    owner = _RemoteRun(specs, remotes, log, settings["log_max_line"] or MAX_LINE_BYTES,
                       settings["parallel"] or 1, settings["kill_on_second_signal"],
                       signal_map=settings["signal_map"])
    return _run_owner(owner, log, settings, secrets)


def _run_check(settings, command, environ, secrets):
    """procwrap check: read and validate the config, fetch nothing."""
    source = settings["config"]
    config = _read_config(settings, environ)
    init, processes, config_settings = _build_specs(config, environ, settings["skip"],
                                                    check_root=False, secrets=secrets)
    for warning in config_settings["warnings"]:
        sys.stderr.write(WARNING_MSG % warning + "\n")
    _print("procwrap: %s is valid: %s, %s\n"
           % ("config" if source.lstrip().startswith("{") else source,
              _plural(len(init), "init entry"), _plural(len(processes), "process")))
    return EX_OK


def _run_supervise(settings, command, environ, secrets):
    """Supervisor mode: a config's init entries and processes."""

    def build(config):
        """(init, processes, config settings) of `config`: every problem
        reported before anything is fetched, then built again resolving, if
        it needs it."""
        checking = _CheckingSecrets(environ, suffix=secrets.suffix, locations=secrets.locations)
        specs = _build_specs(config, environ, settings["skip"], secrets=checking)
        if not checking.found:
            return specs
        secrets.begin()
        return _build_specs(config, environ, settings["skip"], secrets=secrets)

    init, processes, settings.config = build(_read_config(settings, environ))
    labels = _extra_labels(settings)
    _add_labels(labels, init + processes + settings.config["post_start"]
                + settings.config["finish"])
    if settings["env_output_file"]:
        secrets.write_output(settings["env_output_file"])
    capture = settings["log_format"] != "none"
    if not capture:
        for spec in init + processes:   # pass-through: children use our stdout/stderr
            spec.capture = False
    log = _new_log(settings, environ, settings["log_format"], secrets.redact)
    log.extra = labels
    for warning in settings.config["warnings"]:
        log.event(warning, "warning", event="config-warning")
    if settings["events_udp"]:
        try:
            log.on_event = _EventSender(settings["events_udp"])
        except OSError as error:        # a name that does not resolve, now
            raise UsageError("--events-udp: cannot use %s: %s; give an address that "
                             "resolves" % (settings["events_udp"], getattr(
                                 error, "strerror", None) or error))
    health = settings.health()
    owner = _Supervisor(init, processes, log, settings["log_max_line"],
                        settings["kill_on_second_signal"], health=health,
                        post_start=settings.config["post_start"],
                        finish=settings.config["finish"],
                        finish_timeout=settings.config["finish_timeout"],
                        signal_map=settings["signal_map"])
    owner.labels = labels
    _Control(owner, health)
    _watch_pod(owner, settings, environ)

    def reload_config():
        """`procwrap ctl reload`: the config read, checked and resolved again."""
        source = settings["config"]
        if source == "-" or source.lstrip().startswith("{"):
            raise UsageError("the config was %s, which cannot be read again; start procwrap "
                             "with -c FILE to reload it" % (
                                 "read from stdin" if source == "-" else "given as JSON text"))
        init, processes, config_settings = build(_read_config(settings, environ))
        _add_labels(labels, processes)
        for spec in processes:
            spec.capture = capture
        return init, processes, config_settings
    owner.reload_config = reload_config
    api = _reporting_options(settings, environ, secrets, need_task=False)
    if api["reporting"]:
        owner.report(api)
    if settings.config.get("etcd"):
        owner.fleet(_config_semaphores(settings.config["etcd"], secrets, owner.loop, log))
    try:
        return _run_owner(owner, log, settings, secrets)
    finally:
        if log.on_event is not None:    # after the last record, procwrap's exit
            log.on_event.close()


def _watch_pod(supervisor, settings, environ):
    """--preemption-url (and --drain-url), --exit-with-containers: their
    watches, each in a thread of its own; a mistake is a UsageError now."""
    if settings["drain_url"] and not settings["preemption_url"]:
        raise UsageError("%s: drains when the node is preempted; give --preemption-url too "
                         "(gce on GKE)" % settings.where("drain_url"))
    if settings["preemption_url"]:
        _PreemptionWatch(supervisor.loop, supervisor.log, settings["preemption_url"],
                         lambda: _on_preempted(supervisor, settings["drain_url"])).start()
    if settings["exit_with_containers"]:
        def unknown(message):
            supervisor.log.event(message, "error", event="exit-with-containers")
            supervisor.shutdown("--exit-with-containers names no container of the pod",
                                status=EX_USAGE)
        _ContainerWatch(supervisor.loop, supervisor.log, settings["exit_with_containers"],
                        environ, lambda ended: _exit_with_containers(supervisor, ended),
                        unknown).start()


def _extra_labels(settings):
    """The labels of every record and metric: the labels file's (less
    --labels-exclude), under the config's `labels`, under --labels."""
    import fnmatch
    labels = {}
    path = settings["labels_file"]
    if path:
        try:
            text = _read_file(path).decode("utf-8", "replace")
        except (OSError, ValueError) as error:
            raise UsageError("%s: cannot read %r: %s; fix the path" % (
                settings.where("labels_file"), path, _read_error(error)))
        labels = dict((key, value) for key, value in _parse_labels_file(text, path).items()
                      if not any(fnmatch.fnmatchcase(key, pattern)
                                 for pattern in settings["labels_exclude"]))
    labels.update(settings.config.get("labels") or {})
    labels.update(settings["labels"] or {})
    return labels


def _add_labels(labels, specs):
    """Each entry's records carry the extra labels (its own win)."""
    if labels:
        for spec in specs:
            spec.labels = dict(labels, **(spec.labels or {}))


def _config_semaphores(config, secrets, loop, log):
    """func(spec) -> the _Semaphore of a process's lock, on the config's etcd."""
    import socket
    password = None
    if config.get("password"):
        password = str(secrets.located(config["password"], "etcd.password")[1])
    etcd = _Etcd([url.strip().rstrip("/") for url in config["endpoints"]], config.get("user"),
                 password, config.get("cacert"), config.get("cert"), config.get("key"))
    info = {"host": socket.gethostname(), "pid": os.getpid(), "procwrap": __version__}
    return lambda spec: _Semaphore(loop, log, etcd, spec.lock_name, spec.lock_limit,
                                   config["prefix"], config["ttl"],
                                   dict(info, process=spec.name))


def _wrap_lock(settings, secrets, loop, log):
    """The _Semaphore --lock names, on the etcd --etcd names."""
    import socket
    name, etcd = _lock_settings(settings, settings["lock"], "--lock", secrets)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "procwrap": __version__}
    return _Semaphore(loop, log, etcd, name, settings["max_concurrency"],
                      settings["lock_prefix"], settings["lock_ttl"] or LOCK_TTL, info)


def _lock_settings(settings, name, where, secrets):
    """(the lock's name, the _Etcd to reach it), every problem a UsageError."""
    if not name or not settings["etcd"]:
        raise UsageError("%s and --etcd go together: give the lock's NAME and etcd's URL"
                         % where)
    if "/" in name or not name.strip():
        raise UsageError(BAD_VALUE_MSG % (where, "a name without '/'", name))
    if settings["max_concurrency"] < 1:
        raise UsageError(BAD_VALUE_MSG % ("--max-concurrency", "at least 1",
                                          settings["max_concurrency"]))
    password = None
    if settings["etcd_password"]:
        password = str(secrets.located(settings["etcd_password"], "--etcd-password")[1])
    endpoints = [url.strip().rstrip("/") for url in settings["etcd"].split(",") if url.strip()]
    return name, _Etcd(endpoints, settings["etcd_user"], password, settings["etcd_cacert"],
                       settings["etcd_cert"], settings["etcd_key"])


def _run_locks(settings, command, environ, secrets):
    """procwrap locks NAME --etcd URL: who holds the lock's slots, who waits,
    in order (read-only)."""
    if len(command) != 1:
        raise UsageError("locks: give one lock NAME (procwrap locks NAME --etcd URL)")
    name, etcd = _lock_settings(settings, command[0], "locks: NAME", secrets)
    prefix = settings["lock_prefix"].rstrip("/") + "/" + name + "/"
    try:
        keys, _ = etcd.queue(prefix)
    except _HttpError as error:
        raise UnavailableError("locks: etcd: %s" % _describe_http(error))
    rows = [("#", "STATE", "HOST", "PID", "SINCE")]
    for index, (key, _, value) in enumerate(keys):
        info = _json_object(value) or {}
        rows.append((str(index + 1), "holding" if index < settings["max_concurrency"]
                     else "waiting", str(info.get("host", "?")), str(info.get("pid", "?")),
                     str(info.get("since", "?"))))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    _print("".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0]))
                   .rstrip() + "\n" for row in rows))
    return EX_OK


def _reporting_options(settings, environ, secrets, need_task=True):
    """The reporting settings (_api_options), their credentials redacted."""
    api = _api_options(settings.options, environ, need_task)
    for credential in (api["api_key"], api["rollbar_access_token"]):
        if credential:
            secrets.redact.add(credential)
    return api


def _run_owner(owner, log, settings, secrets):
    """What both modes do around their run: report what resolution did, keep
    Vault's leases alive (a failed renewal may end the run), close the log."""
    _report_secrets(log, secrets)
    stop = settings["vault_renew_failure"] == "stop"
    secrets.start_renewal(owner.loop, log, (lambda reason: owner.shutdown(
        reason, EX_UNAVAILABLE)) if stop else None)
    try:
        return owner.run()
    finally:
        log.close()


CONVERT_USAGE = """usage: procwrap convert supervisord.conf [-o FILE]

Writes the procwrap config that runs the programs of a supervisord.conf (and
its [include] files) the way supervisord runs them: YAML on stdout, or FILE
(.json, .yaml or .yml; never over a file that is already there).  Each option
or section without a procwrap equivalent is named on stderr, with why.
"""

WAIT_URL = "http://127.0.0.1:8111/readiness"
WAIT_USAGE = """usage: procwrap wait [--timeout SECONDS] [URL]

Waits until a procwrap's /readiness answers 200 (URL: %s), for an
init step or another container's command.  Exit status: 0 ready; 124 when the
timeout came first (without one it waits for good); 2 usage.  procwrap holds a
?wait request until it is ready, so waiting costs one request; while nothing
answers yet it tries again, at most once a second.
""" % WAIT_URL

INSTALL_USAGE = """usage: procwrap install [PREFIX]

Writes PREFIX/lib/procwrap/procwrap.py, its bytecode for this interpreter, and
a launcher PREFIX/bin/procwrap, so that `procwrap ...` starts as fast and as
light as pip's console script, in images without pip (PREFIX: /usr/local).
Running it again updates them; a file procwrap did not write is left alone.
"""

#: What identifies procwrap's module and launcher, for `install` to replace them.
MODULE_MARKER = b'"""procwrap: run programs and keep them honest.'

LAUNCHER_MARKER = b"# procwrap launcher, written by `procwrap install`"


def _install(argv):
    """`procwrap install [PREFIX]`: the module, its .pyc and a launcher."""
    if argv[:1] in (["-h"], ["--help"]):
        _print(INSTALL_USAGE)
        return EX_OK
    if len(argv) > 1 or argv[:1] and argv[0].startswith("-"):
        raise UsageError("install: expects at most a PREFIX; see procwrap install --help")
    import inspect
    import py_compile
    try:
        source = inspect.getsource(sys.modules[__name__])
    except (OSError, TypeError):
        raise UsageError("install: procwrap's source is not in a file here (run from stdin?); "
                         "run python3 procwrap.py install")
    prefix = os.path.abspath(argv[0] if argv else "/usr/local")
    library, scripts = os.path.join(prefix, "lib", "procwrap"), os.path.join(prefix, "bin")
    module = _OwnPath(os.path.join(library, "procwrap.py"), "install", 0o644,
                      _has_marker(MODULE_MARKER, 64))
    launcher = _OwnPath(os.path.join(scripts, "procwrap"), "install", 0o755,
                        _has_marker(LAUNCHER_MARKER, 256))
    for own in (module, launcher):
        own.check()         # both, before anything is written
    for directory in (library, scripts):
        try:
            os.makedirs(directory, 0o755, exist_ok=True)
        except OSError as error:
            raise UsageError("install: cannot create %s: %s; pick another PREFIX"
                             % (directory, error.strerror))
    module.write(source.encode("utf-8"))
    try:
        compiled = py_compile.compile(module.path, doraise=True)
    except (py_compile.PyCompileError, OSError) as error:
        raise UsageError("install: cannot compile %s: %s" % (module.path, error))
    launcher.write(("#!%s\n%s; run it again to update.\nimport sys\nsys.path.insert(0, %r)\n"
                    "from procwrap import main\nsys.exit(main())\n"
                    % (sys.executable, LAUNCHER_MARKER.decode(), library)).encode("utf-8"))
    _print("installed procwrap %s for %s:\n  %s\n  %s\n  %s\n"
           % (__version__, sys.executable, module.path, compiled, launcher.path))
    return EX_OK


def _convert(argv, environ):
    """`procwrap convert supervisord.conf [-o FILE]`: the procwrap config
    that runs the same programs (YAML on stdout, or FILE as .json/.yaml),
    and a note on stderr for each option that has no equivalent."""
    if argv[:1] in (["-h"], ["--help"]):
        _print(CONVERT_USAGE)
        return EX_OK
    output = None
    if len(argv) == 3 and argv[1] in ("-o", "--output"):
        output = argv[2]
    elif len(argv) != 1 or argv[0].startswith("-"):
        raise UsageError("convert: expects supervisord.conf [-o FILE]; see procwrap convert "
                         "--help")
    config, notes = _supervisord_config(argv[0], environ)
    import json
    fmt = "yaml"
    if output is not None:
        fmt = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(
            os.path.splitext(output)[1].lower())
        if fmt is None:
            raise UsageError("convert: -o %s: name it .json, .yaml or .yml" % output)
    text = (json.dumps(config, indent=2) + "\n" if fmt == "json" else
            "# procwrap config converted from %s by procwrap convert\n%s" % (
                argv[0], _yaml_text(config)))
    for note in notes:
        sys.stderr.write("procwrap: note: %s\n" % note)
    if output is None:
        _print(text)
    else:
        _OwnPath(output, "convert -o", 0o644).write(text.encode("utf-8"))
        sys.stderr.write("procwrap: wrote %s: %s; run procwrap check -c %s\n"
                         % (output, _plural(len(config["processes"]), "process"), output))
    return EX_OK


def _wait(argv):
    """`procwrap wait [--timeout SECONDS] [URL]`: until a procwrap's
    /readiness answers 200 (0), or the deadline (124, as timeout(1)).

    procwrap holds a `?wait=S` request until it is ready, so a waiting
    `wait` costs one request, not a poll; while nothing answers yet (the
    supervisor is not up) it tries again at growing intervals, up to 1 s."""
    if argv[:1] in (["-h"], ["--help"]):
        _print(WAIT_USAGE)
        return EX_OK
    timeout, url, index = None, WAIT_URL, 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--timeout" or arg.startswith("--timeout="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            else:
                index += 1
                if index >= len(argv):
                    raise UsageError(NEEDS_VALUE_MSG % ("--timeout", "SECONDS"))
                value = argv[index]
            timeout = _opt_seconds(value, "wait --timeout")
        elif arg.startswith("-") or url is not WAIT_URL:
            raise UsageError("wait: unexpected %r; expects [--timeout SECONDS] [URL]" % arg)
        else:
            url = arg
        index += 1
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("wait: %r is not an http:// or https:// URL" % url)
    try:
        port = parts.port
    except ValueError:
        raise UsageError("wait: %r has a bad port" % url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    path = (parts.path or "/") + ("?" + parts.query + "&" if parts.query else "?")
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, said = 0.05, None
    while True:
        left = HTTP_WAIT_MAX if deadline is None else deadline - time.monotonic()
        if left <= 0:
            sys.stderr.write(ERROR_MSG % ("wait: %s not ready within %s s (%s)" % (
                url, _format_seconds(timeout), said or "no answer")) + "\n")
            return EX_TIMEOUT
        wait = max(0.0, min(left, HTTP_WAIT_MAX))
        connection = connection_class(parts.hostname, port, timeout=wait + 5)
        try:
            connection.request("GET", "%swait=%s" % (path, _format_seconds(round(wait, 3))))
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                return EX_OK
            said = "HTTP %d" % answer.status
        except (OSError, http.client.HTTPException) as error:
            said = getattr(error, "strerror", None) or str(error) or type(error).__name__
        finally:
            connection.close()
        # Not up yet, or an answer that did not wait (not a procwrap, or one
        # shutting down): again after a while, never past the deadline.
        left = delay if deadline is None else deadline - time.monotonic()
        time.sleep(max(0.0, min(delay, left)))
        delay = min(delay * 2, 1.0)


def _report_secrets(log, secrets):
    """Log what resolution did: notes, a summary, and values under --log-secrets."""
    if not log.redact.enabled:
        log.event(LOG_SECRETS_MSG, "warning", event="log-secrets")
        for name, value in sorted(secrets.resolved.items()):
            log.event("%s=%s" % (name, value), "warning", event="secret", name=name, value=value)
    for level, message in secrets.notes:
        log.event(message, level, event="secrets")
    del secrets.notes[:]
    if secrets.fetches:
        log.event(RESOLVED_MSG % (_plural(len(secrets.resolved), "variable"),
                                  _plural(len(secrets.raw), "location"),
                                  _plural(secrets.fetches, "fetch")),
                  event="secrets-resolved", names=sorted(secrets.resolved),
                  fetches=secrets.fetches)


def main(argv=None):
    """Run procwrap as the command line would, and return its exit status.

        >>> import procwrap
        >>> procwrap.main(["--timeout", "5", "--", "true"])
        0
    """
    if argv is None:
        argv = sys.argv[1:]
    redact = _Redactor()        # what this run resolves, blanked out of what it prints
    try:
        return _run(list(argv), os.environ, redact)
    except ProcwrapError as error:
        for line in redact(str(error)).split("\n"):
            sys.stderr.write(ERROR_MSG % line + "\n")
        return error.exit_status
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception:
        import traceback
        sys.stderr.write(redact(traceback.format_exc()))
        sys.stderr.write(INTERNAL_ERROR_MSG % __version__ + "\n")
        return EX_SOFTWARE


#: First arguments after which procwrap ends at once: script mode runs them
#: as they are, without _reexec_compiled().
_SHORT_LIVED = ("ctl", "check", "install", "convert", "wait", "-h", "--help", "--version")


def _reexec_compiled(code):
    """Script mode made as light as module mode: run the interpreter again,
    same pid and flags, on this module's compiled code held in a memfd.

    `python3 procwrap.py` makes CPython compile the whole file, and the
    compiler's garbage stays in the heap (memory arenas pinned by the few
    objects that outlive it): about 11 MB more than `python3 -m procwrap`,
    for as long as a supervisor runs.  The compiled code is at hand (the
    running module's), so it is marshalled into an anonymous memory file
    (memfd_create: nothing is written to any disk, and there is no cache a
    directory's other users could tamper with), which CPython runs as a .pyc:
    `python3 -S /proc/self/fd/N ARGS`.  That costs one interpreter start
    without `site` (about 10 ms; site-packages are added when an optional
    library is imported, see _require) and saves no compile time: `procwrap
    install` and `python3 -m procwrap` are the fast starts.  Where it cannot
    be done (no memfd, no /proc, not Linux) procwrap goes on as it is.
    """
    if sys.argv[1:2] and sys.argv[1] in _SHORT_LIVED or not os.path.isdir("/proc/self/fd"):
        return
    fd = -1
    try:
        import importlib.util
        import marshal
        import subprocess
        fd = _memfd_create("procwrap")
        data = importlib.util.MAGIC_NUMBER + _PYC_HEADER_REST + marshal.dumps(code)
        while data:
            data = data[os.write(fd, data):]
        # -S: `site` costs more than the rest of the start (40 ms of 50 here,
        # with many packages installed); it is loaded when a library is needed.
        flags = subprocess._args_from_interpreter_flags()
        lazy = not sys.flags.no_site
        os.environ["PROCWRAP_SCRIPT"] = ("lazy-site:" if lazy else "no-site:") + (
            sys.argv[0] or "-")
        os.execv(sys.executable, [sys.executable] + flags + (["-S"] if lazy else [])
                 + ["/proc/self/fd/%d" % fd] + sys.argv[1:])
    except (OSError, ImportError, AttributeError, ValueError):
        os.environ.pop("PROCWRAP_SCRIPT", None)
        if fd >= 0:
            os.close(fd)


def _ran_compiled(path):
    """In the process _reexec_compiled() started: close the memfd, and look as
    the script would (argv[0], sys.path[0])."""
    site, _, script = os.environ.pop("PROCWRAP_SCRIPT").partition(":")
    if site == "lazy-site":
        _LAZY_SITE.append(True)
    try:
        os.close(int(path.rsplit("/", 1)[1]))
    except (OSError, ValueError):
        pass
    sys.argv[0] = script
    if sys.path and sys.path[0] == os.path.dirname(path):
        sys.path[0] = os.path.dirname(os.path.abspath(script)) if script != "-" else ""


if __name__ == "__main__":
    if "PROCWRAP_SCRIPT" in os.environ and globals().get("__file__", "").startswith(
            "/proc/self/fd/"):
        _ran_compiled(__file__)
    elif not os.path.isfile(getattr(globals().get("__spec__"), "cached", None) or ""):
        # A script, or python3 -m procwrap compiled afresh (no .pyc written:
        # PYTHONDONTWRITEBYTECODE, a read-only directory): both paid for a compile.
        _reexec_compiled(sys._getframe(0).f_code)
    sys.exit(main())
