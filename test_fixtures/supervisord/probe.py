"""A program run by supervisord and by procwrap from the converted config:
writes what it was given (argv, working directory, environment) to
$PROBE_DIR/NAME.json, then sleeps until stopped (or exits with argv[2])."""
import json
import os
import sys
import time

name = sys.argv[1]
path = os.path.join(os.environ["PROBE_DIR"], name + ".json")
with open(path + ".tmp", "w") as stream:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}, stream)
os.rename(path + ".tmp", path)
if len(sys.argv) > 2:
    sys.exit(int(sys.argv[2]))
while True:
    time.sleep(60)
