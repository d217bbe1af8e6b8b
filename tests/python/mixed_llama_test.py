"""One core, two front doors: two C++ nodes (`pangea run`) and two Python nodes (pangea.Llama
through pangea.DiLoCo) train the built-in Llama in one run, and hold bit-identical synced
parameters after every outer step. The Python model draws its initial parameters as the C++
one does, so they start equal.

    mixed_llama_test.py PANGEA_EXECUTABLE
"""
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import fail  # noqa: E402

OUTER_STEPS = 3

MANIFEST = """
[run]
name = "mixed"
dir = "{run_dir}"
seed = 7

[model]
preset = "tiny"

[data]
seq_len = 32

[train]
lr = 0.003
micro_batch = 4
threads = 1

[diloco]
inner_steps = 3
outer_steps = {outer_steps}

[mesh]
nodes = 4
min_members = 4
address = "127.0.0.1:0"

[compress]
plugin = "int8"
"""


def main():
    pangea = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="pangea-mixed-") as tmp:
        work = pathlib.Path(tmp)
        run = harness.Run(pangea, work, MANIFEST.format(run_dir=work / "run", outer_steps=OUTER_STEPS))
        try:
            for k in (0, 1):
                run.nodes[k] = subprocess.Popen(
                    [pangea, "run", str(run.manifest), "--node-id", str(k), "--set", f"mesh.coordinator={run.address}"],
                    stdout=run._log(f"node-{k}"), stderr=subprocess.STDOUT)
            for k in (2, 3):
                run.nodes[k] = subprocess.Popen(
                    [sys.executable, str(HERE / "llama_worker.py"), str(run.manifest), str(k),
                     "--set", f"mesh.coordinator={run.address}"],
                    stdout=run._log(f"node-{k}"), stderr=subprocess.STDOUT)
            run.wait_all(600)
        finally:
            run.stop()
        hashes = {}
        for k in range(4):
            lines = [json.loads(line) for line in (work / "run" / "metrics" / f"node-{k}.jsonl").read_text().splitlines()]
            hashes[k] = [line["params_hash"] for line in lines]
            if len(hashes[k]) != OUTER_STEPS:
                fail(f"node {k} recorded {len(hashes[k])} outer steps:\n" + run.log_text(k))
        for step in range(OUTER_STEPS):
            seen = {k: hashes[k][step] for k in range(4)}
            if len(set(seen.values())) != 1:
                fail(f"after outer step {step + 1} the nodes differ (0, 1: C++; 2, 3: Python): {seen}")
        if "python" not in (work / "run" / "summary" / "node-2.json").read_text():
            fail("node 2 was not a Python node")
        print(f"ok: 2 C++ and 2 Python nodes of the Llama bit-identical after each of {OUTER_STEPS} outer steps: "
              + ", ".join(hashes[0]))


if __name__ == "__main__":
    main()
