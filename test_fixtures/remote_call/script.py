"""Drives procwrap.connect() the way a user's script does: a function of this
script (guarded by __main__), one of a module only this side has, a run, a
remote exception.  argv[1]: JSON {procwrap, host, python, ssh_options}."""
import json
import os
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onlyhere  # noqa: E402


def where(value):
    """Runs there: what it was given, and where it ran."""
    import sys as remote_sys
    print("printed there", value)
    return {"value": value, "python": "%d.%d" % remote_sys.version_info[:2],
            "argv0": remote_sys.argv[0], "blob": b"\x00\xff"}


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, settings["procwrap"])
    import procwrap
    out = {"local": "%d.%d" % sys.version_info[:2]}
    with procwrap.connect(settings["host"], python=settings["python"],
                          ssh_options=settings["ssh_options"]) as host:
        out["where"] = host.call(where, [1, "two"])
        out["where"]["blob"] = list(out["where"]["blob"])
        out["double"] = host.call(onlyhere.double, [1, 2, 3])
        result = host.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        out["run"] = [result.status, result.stdout.decode(), result.stderr.decode()]
        try:
            host.call(onlyhere.fail, "x")
        except procwrap.RemoteError as error:
            out["raised"] = [error.type, error.message, "onlyhere.py" in error.remote_traceback,
                             'raise LookupError' in error.remote_traceback]
    sys.stdout.flush()
    print("RESULT " + json.dumps(out))
