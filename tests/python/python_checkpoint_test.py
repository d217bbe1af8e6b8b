"""Checkpoints of Python nodes: two nodes save every 2 outer steps through the storage plugin;
every node is SIGKILLed mid-run; restarted with resume = latest, they finish bit-identical to an
uninterrupted run of the same manifest. The checkpoint holds the model as safetensors with the
PyTorch module's own parameter names; starting afresh over it is refused.

    python_checkpoint_test.py PANGEA_EXECUTABLE
"""
import json
import pathlib
import signal
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import fail  # noqa: E402

NODES = 2
OUTER_STEPS = 12

MANIFEST = """
[run]
name = "python-checkpoints"
dir = "{run_dir}"

[diloco]
inner_steps = 2
outer_steps = {outer_steps}

[mesh]
nodes = {nodes}
address = "127.0.0.1:0"
min_members = {nodes}
""" + harness.ELASTIC + """
[checkpoint]
interval = 2
"""


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(pangea, work, kill_after=None):
    """A run of NODES nodes; with kill_after, all are SIGKILLed once both reported that many outer
    steps and a checkpoint exists, then restarted with resume = latest. Returns the finals."""
    work.mkdir()
    manifest = MANIFEST.format(run_dir=work / "run", outer_steps=OUTER_STEPS, nodes=NODES)
    first = harness.Run(pangea, work, manifest)
    try:
        for k in range(NODES):
            first.start(k, "--momentum", "0.9", *(["--sleep", "0.1"] if kill_after else []))
        if kill_after is None:
            first.wait_all(300)
            return [first.out(k).with_suffix(".final").read_bytes() for k in range(NODES)]
        latest = work / "run" / "checkpoints" / "python-checkpoints" / "latest"
        first.wait_until(f"both nodes do {kill_after} outer steps and the run has a checkpoint",
                         lambda: all(len(lines(first.out(k).with_suffix(".jsonl"))) >= kill_after for k in range(NODES))
                         and latest.exists(), 120)
        for node in first.nodes.values():
            node.send_signal(signal.SIGKILL)
            node.wait()
    finally:
        first.stop()
    # A fresh coordinator: the whole run restarts from its checkpoints.
    second = harness.Run(pangea, work, manifest)
    try:
        for k in range(NODES):
            second.start(k, "--momentum", "0.9", "--resume", "latest")
        second.wait_all(300)
    finally:
        second.stop()
    resumed = lines(second.out(0).with_suffix(".jsonl"))
    if not resumed or "resumed_at" not in resumed[0]:
        fail(f"node 0 did not resume: {resumed[:1]}\n" + second.log_text(0))
    if resumed[0]["resumed_at"] < 2:
        fail(f"node 0 resumed at outer step {resumed[0]['resumed_at']}")
    return [second.out(k).with_suffix(".final").read_bytes() for k in range(NODES)], resumed[0]["resumed_at"]


def main():
    pangea = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="pangea-python-checkpoints-") as tmp:
        work = pathlib.Path(tmp)
        uninterrupted = run(pangea, work / "uninterrupted")
        if uninterrupted[0] != uninterrupted[1]:
            fail("the uninterrupted run's nodes differ")
        resumed, at = run(pangea, work / "killed", kill_after=5)
        if resumed[0] != resumed[1]:
            fail("the resumed run's nodes differ")
        if resumed[0] != uninterrupted[0]:
            fail(f"killed and resumed at outer step {at}, the run ends on other parameters than the uninterrupted one")

        exported = work / "exported"
        export = subprocess.run([pangea, "checkpoint", "export", str(work / "killed" / "run.toml"), "-o", str(exported)],
                                capture_output=True, text=True)
        if export.returncode != 0:
            fail("pangea checkpoint export:\n" + export.stdout + export.stderr)
        safetensors = (exported / "model.safetensors").read_bytes()
        header = json.loads(safetensors[8:8 + int.from_bytes(safetensors[:8], "little")])
        names = sorted(name for name in header if name != "__metadata__")
        if names != ["0.bias", "0.weight", "2.bias", "2.weight"] or header["0.weight"]["shape"] != [16, 8]:
            fail(f"model.safetensors does not name the module's parameters: {header}")
        if (exported / "config.json").exists():
            fail("a Python model's checkpoint has a Llama config.json")
        inspect = subprocess.run([pangea, "checkpoint", "inspect", str(work / "killed" / "run.toml")],
                                 capture_output=True, text=True)
        if inspect.returncode != 0 or "complete, and every part matches its SHA-256" not in inspect.stdout:
            fail("pangea checkpoint inspect:\n" + inspect.stdout + inspect.stderr)
        # Starting afresh over these checkpoints is refused before the node joins any mesh.
        import pangea

        try:
            pangea.Node(work / "killed" / "run.toml", 0)
            fail("a Python node started afresh over its run's checkpoints")
        except pangea.Error as e:
            if "start over with --fresh" not in str(e):
                fail(f"the refusal does not say how to start over: {e}")
        print(f"ok: {NODES} Python nodes killed at outer step >= 5, resumed from step {at}: bit-identical to the "
              "uninterrupted run; the checkpoint names the module's parameters")


if __name__ == "__main__":
    main()
