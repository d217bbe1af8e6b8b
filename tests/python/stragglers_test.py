"""A straggling Python node and [diloco] quorum: four Python nodes over a real coordinator, node 3
sleeping 0.15 s per inner step (the others 0.01 s), quorum = 3.

    stragglers_test.py PANGEA_EXECUTABLE

Checks that node 3 is told to wrap up and ends its rounds early (the others train every inner
step), that every node holds bit-identical parameters after every outer step, that each step's
total is the sum of the counts the nodes trained, and that the run equals weighted parameter
averaging computed here without the network: with SGD, no compression and the outer optimizer at
lr 1, momentum 0, the synced parameters after a step are sum_i k_i / sum(k) * node i's after its
k_i inner steps.
"""
import json
import pathlib
import sys
import tempfile

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
import worker  # noqa: E402
from harness import fail  # noqa: E402

NODES = 4
INNER_STEPS = 10
OUTER_STEPS = 4

MANIFEST = f"""
[run]
name = "python-stragglers"
dir = "{{run_dir}}"
seed = 1

[diloco]
inner_steps = {INNER_STEPS}
outer_steps = {OUTER_STEPS}
quorum = 3
grace_ms = 100

[mesh]
nodes = {NODES}
address = "127.0.0.1:0"
min_members = {NODES}
""" + harness.EXACT_AVERAGING


def main():
    pangea = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="pangea-python-") as tmp:
        work = pathlib.Path(tmp)
        run = harness.Run(pangea, work, MANIFEST.format(run_dir=work / "run"))
        try:
            for k in range(NODES):
                run.start(k, "--sleep", "0.15" if k == 3 else "0.01")
            run.wait_all(300)
        finally:
            run.stop()
        reports = [[json.loads(line) for line in (work / f"node-{k}.jsonl").read_text().splitlines()]
                   for k in range(NODES)]
        for k, lines in enumerate(reports):
            if len(lines) != OUTER_STEPS:
                fail(f"node {k} reported {len(lines)} outer steps, expected {OUTER_STEPS}")
        counts = [[reports[k][step]["trained_inner_steps"] for k in range(NODES)] for step in range(OUTER_STEPS)]
        for step, row in enumerate(counts):
            if len({reports[k][step]["params_hash"] for k in range(NODES)}) != 1:
                fail(f"the nodes' parameters differ after outer step {step + 1}")
            if sum(c == INNER_STEPS for c in row) < 3:
                fail(f"outer step {step + 1}: fewer than 3 nodes trained all {INNER_STEPS} inner steps: {row}")
            totals = {reports[k][step]["step_inner_steps"] for k in range(NODES)}
            if totals != {sum(row)}:
                fail(f"outer step {step + 1}: the step's totals {totals} are not the sum of the counts {row}")
        short = [row[3] for row in counts if row[3] < INNER_STEPS]
        if not short:
            fail(f"node 3 was never wrapped up: {counts}")
        coordinator_log = (work / "coordinator.log").read_text()
        if "node(s) 3 wrap up" not in coordinator_log:
            fail("the coordinator's log does not show node 3 told to wrap up")
        metrics = [json.loads(line) for line in (work / "run" / "metrics" / "node-3.jsonl").read_text().splitlines()]
        if [m.get("trained_inner_steps") for m in metrics] != [row[3] for row in counts]:
            fail("metrics/node-3.jsonl does not carry the inner steps node 3 trained")
        final = torch.frombuffer(bytearray((work / "node-0.final").read_bytes()), dtype=torch.float32)
        expected = worker.averaged_without_network(counts, INNER_STEPS)
        # The ring sums in its own order; the mean here sums in another: equal up to rounding.
        error = (final - expected).abs().max().item()
        if not error <= 1e-5:
            fail(f"the run differs from averaging weighted by inner steps by up to {error} (counts {counts})")
        print(f"ok: node 3 wrapped up on {len(short)} of {OUTER_STEPS} outer steps (counts {counts}); "
              f"bit-identical on every node; max difference from weighted averaging {error:.2e}")


if __name__ == "__main__":
    main()
