"""A child that reports progress with procwrap.StatusUpdater (or, with
--proc-wrapper, through proc_wrapper's variables only, as its own client
would), prints its environment's credentials check, then exits with argv[1]."""
import os
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import procwrap  # noqa: E402

status = int(sys.argv[1]) if len(sys.argv) > 1 else 0
with procwrap.StatusUpdater(incremental_count_mode=True) as updater:
    updater.send_update(expected_count=3, last_status_message="starting")
    for _ in range(3):
        updater.send_update(success_count=1)
    updater.send_update(last_status_message="finishing", extra_props={"step": 3})
secrets = [name for name in ("PROC_WRAPPER_API_KEY", "PROCWRAP_API_KEY", "API_KEY_SEEN")
           if name in os.environ]
print("credentials in my environment: %s" % (",".join(secrets) or "none"))
print("listener port from: %s" % ("PROCWRAP_STATUS_UPDATE_PORT" if
                                  "PROCWRAP_STATUS_UPDATE_PORT" in os.environ else "none"))
sys.stdout.flush()
if len(sys.argv) > 2:       # stay until told to stop
    import time
    print("waiting", flush=True)
    time.sleep(float(sys.argv[2]))
sys.exit(status)
