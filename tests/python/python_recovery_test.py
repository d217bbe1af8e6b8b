"""Live recovery of a Python node: four Python nodes train; one is SIGKILLed mid-run; the others
go on without it; restarted with join, it takes up a member's state live (the model's parameters,
the outer optimizer's state and the inner optimizer's: SGD's momentum buffers) and finishes with
the others, all on the same parameters.

    python_recovery_test.py PANGEA_EXECUTABLE
"""
import json
import pathlib
import signal
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import fail  # noqa: E402

NODES = 4
OUTER_STEPS = 60
KILLED = 3

MANIFEST = """
[run]
name = "python-recovery"
dir = "{run_dir}"

[diloco]
inner_steps = 2
outer_steps = {outer_steps}

[mesh]
nodes = {nodes}
address = "127.0.0.1:0"
min_members = 3
""" + harness.ELASTIC


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main():
    pangea = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="pangea-python-recovery-") as tmp:
        work = pathlib.Path(tmp)
        run = harness.Run(pangea, work, MANIFEST.format(run_dir=work / "run", outer_steps=OUTER_STEPS, nodes=NODES))
        try:
            for k in range(NODES):
                run.start(k, "--sleep", "0.08", "--momentum", "0.9")
            killed_out = run.out(KILLED).with_suffix(".jsonl")
            run.wait_until(f"node {KILLED} does 3 outer steps", lambda: len(lines(killed_out)) >= 3, 120)
            run.nodes[KILLED].send_signal(signal.SIGKILL)
            run.nodes[KILLED].wait()
            survivor = run.out(0).with_suffix(".jsonl")
            run.wait_until(f"the others go on without node {KILLED}",
                           lambda: any(line.get("members") == NODES - 1 for line in lines(survivor)), 120)
            run.start(KILLED, "--join", "--sleep", "0.08", "--momentum", "0.9")
            run.wait_all(300)
        finally:
            run.stop()

        rejoined = lines(killed_out)
        if not rejoined or "recovered_at" not in rejoined[0]:
            fail(f"the restarted node did not recover live: {rejoined[:2]}\n" + run.log_text(KILLED))
        first = rejoined[0]
        if first["recovered_at"] <= 3:
            fail(f"it recovered the state of outer step {first['recovered_at']}, the run was further on")
        if first["momentum_buffers"] == 0:
            fail("the inner optimizer's state (SGD momentum) was not taken up")
        if "recovered the state of outer step" not in run.log_text(KILLED):
            fail("the node's log does not say it recovered:\n" + run.log_text(KILLED))
        finals = {k: run.out(k).with_suffix(".final").read_bytes() for k in range(NODES)}
        if len(set(finals.values())) != 1:
            fail("the finishers' final parameters differ")
        hashes = {k: lines(run.out(k).with_suffix(".jsonl"))[-1]["params_hash"] for k in range(NODES)}
        if len(set(hashes.values())) != 1:
            fail(f"the last outer step's hashes differ: {hashes}")
        print(f"ok: node {KILLED} killed, the others went on with {NODES - 1} members; restarted with join it "
              f"recovered outer step {first['recovered_at']} live ({first['momentum_buffers']} momentum buffers) "
              f"and all {NODES} finished on parameters {hashes[0]}")


if __name__ == "__main__":
    main()
