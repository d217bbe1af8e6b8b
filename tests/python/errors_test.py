"""What a Python user sees when something is wrong: the core's message, as a Python exception.

    errors_test.py
"""
import pathlib
import sys
import tempfile

import torch

import pangea


def expect_raises(kind, needle, call):
    try:
        call()
    except kind as e:
        if needle not in str(e):
            sys.exit(f"FAIL: {kind.__name__} without '{needle}': {e}")
        return str(e)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"FAIL: expected {kind.__name__} with '{needle}', got {type(e).__name__}: {e}")
    sys.exit(f"FAIL: expected {kind.__name__} with '{needle}', nothing was raised")


def main():
    with tempfile.TemporaryDirectory(prefix="pangea-python-errors-") as tmp:
        work = pathlib.Path(tmp)
        good = work / "good.toml"
        good.write_text(f'[run]\nname = "errors"\ndir = "{work / "run"}"\n[mesh]\nnodes = 1\n')

        # A manifest key the core does not know: pangea.Error naming the file, the line and the key.
        bad = work / "bad.toml"
        bad.write_text('[diloco]\ninner_stepz = 5\n')
        text = expect_raises(pangea.Error, "inner_stepz", lambda: pangea.Node(bad, 0))
        if "bad.toml" not in text:
            sys.exit(f"FAIL: the error does not name the file: {text}")
        # A value out of range, from an override.
        expect_raises(pangea.Error, "diloco.inner_steps", lambda: pangea.Node(good, 0, set=["diloco.inner_steps=0"]))
        # A plugin that is not there lists what is.
        expect_raises(pangea.Error, "nesterov", lambda: pangea.Node(good, 0, set=["optim.plugin=adamw"]))
        # A missing file.
        expect_raises(pangea.Error, "missing.toml", lambda: pangea.Node(work / "missing.toml", 0))
        # A node id outside the run.
        expect_raises(ValueError, "node_id 3", lambda: pangea.Node(good, 3))

        # A buffer the core cannot work on, and training without a model.
        node = pangea.Node(good, 0)
        expect_raises(ValueError, "float32", lambda: node._core.attach(torch.zeros(4, dtype=torch.float64).numpy(), bytes, print, [], []))
        expect_raises(RuntimeError, "no model is attached", lambda: node._core.sync(0.0, 0.0, 1))
        model = torch.nn.Linear(3, 1)
        pangea.DiLoCo(node, model, torch.optim.SGD(model.parameters(), lr=0.1))
        expect_raises(RuntimeError, "attached to this node already",
                      lambda: pangea.DiLoCo(node, model, torch.optim.SGD(model.parameters(), lr=0.1)))
    print("ok: errors reach Python with the core's message")


if __name__ == "__main__":
    main()
