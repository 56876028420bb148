"""A module that exists only on the calling side (the remote agent runs with
python -I in /, so it cannot import it from there): procwrap's import hook
brings it over when a call needs it."""
import logging


def double(items):
    """Each item twice; logs a record and prints a line on the way."""
    logging.getLogger("onlyhere").warning("doubling %d items", len(items))
    print("doubling", items)
    return [item * 2 for item in items]


def fail(reason):
    """Raise, so the caller sees a RemoteError."""
    raise LookupError("no such thing: %s" % reason)
