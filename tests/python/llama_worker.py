"""A Python node of the built-in Llama (pangea.Llama), on its share of the run's [data]:

    llama_worker.py MANIFEST NODE_ID [--set section.key=value ...]
"""
import argparse

import torch

import pangea


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("node_id", type=int)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    node = pangea.Node(args.manifest, args.node_id, set=args.set)
    model = pangea.Llama(node)
    optimizer = torch.optim.AdamW(model.parameters(), lr=node.setting("train", "lr"), betas=(0.9, 0.95))
    diloco = pangea.DiLoCo(node, model, optimizer)
    micro_batch = node.setting("train", "micro_batch")
    while diloco.inner_step < node.inner_steps * node.outer_steps:
        loss = model.loss(node.next_tokens(micro_batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        report = diloco.step(loss)
        if report is not None:
            print(f"outer step {report['outer_step']}: loss {loss.item():.4f}, parameters {report['params_hash']}",
                  flush=True)
    print(f"node {args.node_id}: done, parameters {diloco.finish()}", flush=True)


if __name__ == "__main__":
    main()
