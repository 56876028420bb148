"""Leave orphans behind, in stages, for reaping tests (after tini's test of the same name).

usage: spawn_orphans.py N [linger]
Forks N grandchildren through short-lived intermediate children, so each
grandchild is orphaned and re-parented to the nearest subreaper or PID 1.
Each grandchild prints `orphan <pid>` and exits at once; with `linger` it
sleeps for 60 s instead (a test then checks it is killed, not left).
Prints `spawned N` when every orphan exists, then `done` and exits 0.
"""
import os
import sys
import time

count = int(sys.argv[1])
linger = len(sys.argv) > 2 and sys.argv[2] == "linger"
r, w = os.pipe()
for _ in range(count):
    middle = os.fork()
    if middle == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os.close(r)
            sys.stdout.write("orphan %d\n" % os.getpid())
            sys.stdout.flush()
            os.write(w, b"x")
            if linger:
                time.sleep(60)
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)
os.close(w)
got = 0
while got < count:
    got += len(os.read(r, count))
sys.stdout.write("spawned %d\n" % count)
sys.stdout.write("done\n")
sys.stdout.flush()
