"""Four Python nodes train a small torch.nn model through pangea.DiLoCo, over a real coordinator
and real TCP connections, each in its own process.

    python_nodes_test.py PANGEA_EXECUTABLE

Checks that every node holds bit-identical parameters after every outer step, and that with
H = 1, SGD, no compression and the outer optimizer at lr 1, momentum 0, the run equals
synchronous parameter averaging computed here without the network.
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
OUTER_STEPS = 6

MANIFEST = """
[run]
name = "python-nodes"
dir = "{run_dir}"
seed = 1

[diloco]
inner_steps = 1
outer_steps = {outer_steps}

[mesh]
nodes = {nodes}
address = "127.0.0.1:0"
min_members = {nodes}
""" + harness.EXACT_AVERAGING


def run_nodes(pangea, work):
    run = harness.Run(pangea, work, MANIFEST.format(run_dir=work / "run", outer_steps=OUTER_STEPS, nodes=NODES))
    try:
        for k in range(NODES):
            run.start(k)
        run.wait_all(300)
    finally:
        run.stop()


def main():
    pangea = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="pangea-python-") as tmp:
        work = pathlib.Path(tmp)
        run_nodes(pangea, work)
        reports = [[json.loads(line) for line in (work / f"node-{k}.jsonl").read_text().splitlines()]
                   for k in range(NODES)]
        for k, lines in enumerate(reports):
            if len(lines) != OUTER_STEPS:
                fail(f"node {k} reported {len(lines)} outer steps, expected {OUTER_STEPS}")
            if any(line["members"] != NODES for line in lines):
                fail(f"node {k} ran an outer step with fewer than {NODES} members: {lines}")
        for step in range(OUTER_STEPS):
            hashes = {reports[k][step]["params_hash"] for k in range(NODES)}
            if len(hashes) != 1:
                fail(f"the nodes' parameters differ after outer step {step + 1}: {hashes}")
        finals = [torch.frombuffer(bytearray((work / f"node-{k}.final").read_bytes()), dtype=torch.float32)
                  for k in range(NODES)]
        if any(not torch.equal(finals[0], f) for f in finals[1:]):
            fail("the nodes' final parameters are not bit-identical")
        # Synchronous parameter averaging: one SGD step per node, then the plain mean.
        expected = worker.averaged_without_network([[1] * NODES] * OUTER_STEPS, inner_steps=1)
        if finals[0].shape != expected.shape:
            fail(f"{finals[0].numel()} parameters, expected {expected.numel()}")
        # The ring sums in its own order; the mean here sums in another: equal up to rounding.
        error = (finals[0] - expected).abs().max().item()
        if not error <= 1e-5:
            fail(f"the run differs from synchronous parameter averaging by up to {error}")
        metrics = (work / "run" / "metrics" / "node-0.jsonl").read_text().splitlines()
        if len(metrics) != OUTER_STEPS:
            fail(f"metrics/node-0.jsonl has {len(metrics)} lines, expected {OUTER_STEPS}")
        print(f"ok: {NODES} Python nodes bit-identical after each of {OUTER_STEPS} outer steps; "
              f"max difference from synchronous averaging {error:.2e}")


if __name__ == "__main__":
    main()
