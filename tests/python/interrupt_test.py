"""Ctrl-C reaches a Python node while the core waits on the network: node 1 stops stepping (its
heartbeats go on, so the run waits for it); node 0, blocked in an outer step, gets SIGINT and
ends at once with KeyboardInterrupt, having left the run.

    interrupt_test.py PANGEA_EXECUTABLE
"""
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import fail  # noqa: E402

MANIFEST = """
[run]
name = "python-interrupt"
dir = "{run_dir}"

[diloco]
inner_steps = 2
outer_steps = 50

[mesh]
nodes = 2
address = "127.0.0.1:0"
timeout_ms = 4000
heartbeat_ms = 500
"""


def main():
    pangea = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="pangea-python-interrupt-") as tmp:
        work = pathlib.Path(tmp)
        run = harness.Run(pangea, work, MANIFEST.format(run_dir=work / "run"))
        try:
            run.start(0)
            run.start(1, "--stall-at", "2")
            out = run.out(0).with_suffix(".jsonl")
            run.wait_until("node 0 does 2 outer steps",
                           lambda: out.exists() and len(out.read_text().splitlines()) >= 2, 120)
            time.sleep(1.0)  # node 0 is now waiting for node 1 in outer step 3
            run.nodes[0].send_signal(signal.SIGINT)
            start = time.monotonic()
            try:
                code = run.nodes[0].wait(timeout=20)
            except subprocess.TimeoutExpired:
                fail("node 0 did not end within 20 s of SIGINT:\n" + run.log_text(0))
            seconds = time.monotonic() - start
        finally:
            run.stop()
        log = run.log_text(0)
        if code == 0 or "KeyboardInterrupt" not in log:
            fail(f"node 0 exited with {code} without KeyboardInterrupt:\n{log}")
        steps = [json.loads(line)["outer_step"] for line in out.read_text().splitlines()]
        if steps != [1, 2]:
            fail(f"node 0 reported outer steps {steps}, expected [1, 2]")
        print(f"ok: SIGINT ended node 0 in {seconds:.1f} s while it waited in outer step 3")


if __name__ == "__main__":
    main()
