"""A complete Python node: any torch.nn model, the user's own optimizer and training loop, with
DiLoCo through Pangea's core. Started by `pangea launch` for each node of the run:

    build/bin/pangea launch examples/python/run.toml

(the manifest's [run] entry runs this file), or by hand, one process per node, once a
coordinator runs (`pangea coordinator examples/python/run.toml --listen 127.0.0.1:7000`):

    PYTHONPATH=build/python python3 examples/python/train_mlp.py examples/python/run.toml 0 \\
        --set mesh.coordinator=127.0.0.1:7000
"""
import argparse

import torch

import pangea


def data(node_id, step, batch=32):
    """Node k's batch at inner step s: a synthetic regression, different on every node."""
    generator = torch.Generator().manual_seed(100_000 * (node_id + 1) + step)
    x = torch.randn(batch, 16, generator=generator)
    return x, torch.sin(x[:, :4].sum(dim=1, keepdim=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", nargs="?", help="the run manifest (default: from pangea launch)")
    parser.add_argument("node_id", nargs="?", type=int, help="this node (default: from pangea launch)")
    parser.add_argument("--join", action="store_true", help="join a run in progress (recover from the members)")
    parser.add_argument("--set", action="append", default=[], help="override a setting: section.key=value")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)  # every node starts from the same parameters
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 1)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    node = pangea.Node(args.manifest, args.node_id, join=args.join, set=args.set)
    diloco = pangea.DiLoCo(node, model, optimizer)
    while diloco.inner_step < node.inner_steps * node.outer_steps:
        x, y = (t.to(device) for t in data(node.node_id, diloco.inner_step))
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        report = diloco.step(loss)
        if report is not None:
            print(f"node {node.node_id}: outer step {report['outer_step']}, loss {loss.item():.4f}, "
                  f"{report['members']} members, parameters {report['params_hash']}", flush=True)
    print(f"node {node.node_id}: done, parameters {diloco.finish()}")


if __name__ == "__main__":
    main()
