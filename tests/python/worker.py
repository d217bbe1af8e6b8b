"""One Python node of the tests in this folder: a small torch.nn model (not the Llama) trained
with plain SGD on its own synthetic regression data, through pangea.DiLoCo.

    worker.py MANIFEST NODE_ID OUT [--set section.key=value ...]

Writes OUT.jsonl (one line per outer step: the report) and OUT.final (the final parameters, raw
float32). Every node initializes the model from the same seed; node k draws its data from seed k.
"""
import json
import sys

import torch

import pangea


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def batches(node_id, count, size=16):
    generator = torch.Generator().manual_seed(1000 + node_id)
    target = torch.linspace(-1, 1, 8)
    for _ in range(count):
        x = torch.randn(size, 8, generator=generator)
        yield x, (x @ target).unsqueeze(1)


def main():
    manifest, node_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    overrides = [a for a in sys.argv[4:] if a != "--set"]
    torch.set_num_threads(1)
    node = pangea.Node(manifest, node_id, set=overrides)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    diloco = pangea.DiLoCo(node, model, optimizer)
    steps = node.inner_steps * node.outer_steps
    with open(out + ".jsonl", "w") as lines:
        for x, y in batches(node_id, steps):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            report = diloco.step(loss)
            if report is not None:
                lines.write(json.dumps(report) + "\n")
                lines.flush()
    final_hash = diloco.finish()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with open(out + ".final", "wb") as f:
        f.write(flat.numpy().tobytes())
    print(f"node {node_id}: done, parameters {final_hash}", flush=True)


if __name__ == "__main__":
    main()
