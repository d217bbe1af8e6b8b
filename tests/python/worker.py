"""One Python node of the tests in this folder: a small torch.nn model (not the Llama) trained
with SGD on its own synthetic regression data, through pangea.DiLoCo.

    worker.py MANIFEST NODE_ID OUT [--join] [--resume latest|STEP] [--sleep SECONDS] [--momentum M]
              [--stall-at OUTER_STEP] [--set section.key=value ...]

Writes OUT.jsonl (one line per outer step: the report; a joiner's first line says what it took
up) and OUT.final (the final parameters, raw float32). Every node initializes the model from the
same seed; node k's batch at inner step s is drawn from seed (k, s), so a joiner goes on with the
data of the step it recovered.
"""
import argparse
import json
import time

import torch

import pangea


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def batch(node_id, step, size=16):
    generator = torch.Generator().manual_seed(1_000_000 * (node_id + 1) + step)
    x = torch.randn(size, 8, generator=generator)
    return x, (x @ torch.linspace(-1, 1, 8)).unsqueeze(1)


def averaged_without_network(counts, inner_steps):
    """What a run of these nodes computes with SGD, no compression and the outer optimizer at
    lr 1, momentum 0, here without the network: for each outer step, node k takes counts[step][k]
    SGD steps from the common parameters on its batches from step * inner_steps on, and the
    common parameters become the nodes' mean weighted by their counts."""
    nodes = len(counts[0])
    models = [make_model() for _ in range(nodes)]
    common = torch.cat([p.detach().reshape(-1) for p in models[0].parameters()])
    for step, row in enumerate(counts):
        moved = []
        for k, model in enumerate(models):
            offset = 0
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(common[offset:offset + p.numel()].view(p.shape))
                    offset += p.numel()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
            for s in range(row[k]):
                x, y = batch(k, step * inner_steps + s)
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
            moved.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
        common = sum(moved[k] * (row[k] / sum(row)) for k in range(nodes))
    return common


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("node_id", type=int)
    parser.add_argument("out")
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--resume", default="")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per inner step (a slower run)")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--stall-at", type=int, default=-1, help="after this many outer steps, stop stepping (hang)")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)

    node = pangea.Node(args.manifest, args.node_id, join=args.join, set=args.set, resume=args.resume)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=args.momentum)
    diloco = pangea.DiLoCo(node, model, optimizer)
    with open(args.out + ".jsonl", "w") as lines:
        if args.resume:
            lines.write(json.dumps({"resumed_at": diloco.outer_step}) + "\n")
        if diloco.recovered_at is not None:
            buffers = sum(1 for state in optimizer.state.values() if "momentum_buffer" in state)
            lines.write(json.dumps({"recovered_at": diloco.recovered_at, "momentum_buffers": buffers}) + "\n")
        while diloco.inner_step < node.inner_steps * node.outer_steps:
            if diloco.outer_step == args.stall_at:
                time.sleep(3600)
            x, y = batch(args.node_id, diloco.inner_step)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            time.sleep(args.sleep)
            report = diloco.step(loss)
            if report is not None:
                lines.write(json.dumps(report) + "\n")
                lines.flush()
    final_hash = diloco.finish()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with open(args.out + ".final", "wb") as f:
        f.write(flat.numpy().tobytes())
    print(f"node {args.node_id}: done, parameters {final_hash}", flush=True)


if __name__ == "__main__":
    main()
