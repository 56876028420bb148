"""Runs procwrap.main() on fuzz cases, many per process (tests/test_fuzz.py drives it).

One JSON case per line on stdin: {"argv": [...], "env": {...}, "files": {name: text}}.
One JSON answer per line on the original stdout: {"status": N, "stderr": "...",
"rss_kb": N, "bug": whether stdout had an internal-error record}.  procwrap's own fds 1
and 2 go to temporary files while a case runs, so what it writes is what a user would
have seen.  Files named in "files" are written into
a scratch directory first, and "{dir}" in argv and env values is replaced by its path.
"""
import json
import os
import resource
import sys
import tempfile

sys.path.insert(0, sys.argv[1])
import procwrap  # noqa: E402

#: Bounded memory: a case that needs more than this fails with MemoryError,
#: which procwrap would report as a bug (exit 70): the test fails.
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

answers = os.fdopen(os.dup(1), "w")
scratch = tempfile.mkdtemp(prefix="procwrap-fuzz-")
saved_env = dict(os.environ)


def run_case(case):
    for name, text in case.get("files", {}).items():
        with open(os.path.join(scratch, name), "w", encoding="utf-8",
                  errors="surrogatepass") as stream:
            stream.write(text)
    argv = [arg.replace("{dir}", scratch) for arg in case["argv"]]
    os.environ.clear()
    os.environ.update(saved_env)
    os.environ.update((k, v.replace("{dir}", scratch)) for k, v in case.get("env", {}).items())
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    old_out, old_err = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
        status = procwrap.main(argv)
    except SystemExit as exit:
        status = exit.code
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(old_out, 1)
        os.dup2(old_err, 2)
        os.close(old_out)
        os.close(old_err)
    err.seek(0)
    stderr = err.read().decode("utf-8", "replace")
    out.seek(0)
    bug = b'"event":"bug"' in out.read()     # an internal error, logged as a record
    out.close()
    err.close()
    for name in os.listdir(scratch):
        path = os.path.join(scratch, name)
        if os.path.isfile(path) or os.path.islink(path):
            os.unlink(path)
    # The peak of this process's own memory: ru_maxrss would count the RSS of
    # the test runner that forked it (it survives fork and exec).
    with open("/proc/self/status") as stream:
        rss = int([line for line in stream if line.startswith("VmHWM:")][0].split()[1])
    if "Traceback" in stderr:
        stderr = stderr[stderr.index("Traceback"):]
    return {"status": status, "stderr": stderr[:4000], "rss_kb": rss, "bug": bug}


try:
    for line in sys.stdin:
        answers.write(json.dumps(run_case(json.loads(line))) + "\n")
        answers.flush()
finally:
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)
