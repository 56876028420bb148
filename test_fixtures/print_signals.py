"""Print every signal received, one name per line; the handshake line comes first.

usage: print_signals.py [--ignore SIG[,SIG]] [--exit-on SIG]
  --ignore   print these signals but keep running (default: none ignored)
  --exit-on  exit with status 0 after printing this signal
Signals not ignored and not --exit-on are printed and the program carries on,
as dumb-init's print_signals does.
"""
import os
import signal
import sys

exit_on = None
args = sys.argv[1:]
if "--exit-on" in args:
    exit_on = args[args.index("--exit-on") + 1].upper()


def on_signal(signum, frame):
    try:
        name = signal.Signals(signum).name
    except ValueError:          # a realtime signal without a name of its own
        name = "signal %d" % signum
    sys.stdout.write(name + "\n")
    sys.stdout.flush()
    if exit_on and name in (exit_on, "SIG" + exit_on):
        sys.exit(0)


for signum in signal.valid_signals() if hasattr(signal, "valid_signals") else range(1, 65):
    if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        continue
    try:
        signal.signal(signum, on_signal)
    except (OSError, ValueError, RuntimeError):
        pass
sys.stdout.write("ready (pid: %d)\n" % os.getpid())
sys.stdout.flush()
while True:
    signal.pause()
