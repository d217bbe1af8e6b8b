#!/usr/bin/env python3
"""PyTorch eager reference for `pangea bench train`: the same Llama-3 style model (token
embedding, RMSNorm, rotary embeddings, grouped-query causal attention, SwiGLU, optional tied
output) and the same inner step (micro-batches with gradient accumulation, clipping, AdamW with
weight decay on matrices only), written as a PyTorch user would, timed the same way. Prints one
JSON line: {"tokens_per_s": ..., "seconds_per_step": ..., "torch": ...}.

Run by `pangea bench train --reference bench/train_reference.py` with Debian's python3, which
sees python3-torch: the same LibTorch version the node links. bf16 is torch.autocast, as a
PyTorch user would write it.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)) * self.weight


class Block(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        hd = a.d_model // a.heads
        self.heads, self.kv_heads, self.hd = a.heads, a.kv_heads, hd
        self.attention_norm = RMSNorm(a.d_model, a.norm_eps)
        self.wq = torch.nn.Linear(a.d_model, a.heads * hd, bias=False)
        self.wk = torch.nn.Linear(a.d_model, a.kv_heads * hd, bias=False)
        self.wv = torch.nn.Linear(a.d_model, a.kv_heads * hd, bias=False)
        self.wo = torch.nn.Linear(a.heads * hd, a.d_model, bias=False)
        self.ffn_norm = RMSNorm(a.d_model, a.norm_eps)
        self.w1 = torch.nn.Linear(a.d_model, a.ffn, bias=False)
        self.w3 = torch.nn.Linear(a.d_model, a.ffn, bias=False)
        self.w2 = torch.nn.Linear(a.ffn, a.d_model, bias=False)

    def attention(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, 1)
            v = v.repeat_interleave(self.heads // self.kv_heads, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            y = torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v
        return self.wo(y.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x, cos, sin):
        h = x + self.attention(self.attention_norm(x), cos, sin)
        n = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(n)) * self.w3(n))


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class Llama(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embedding = torch.nn.Embedding(a.vocab, a.d_model)
        self.blocks = torch.nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.d_model, a.norm_eps)
        self.output = None if a.tied else torch.nn.Linear(a.d_model, a.vocab, bias=False)
        hd = a.d_model // a.heads
        inverse = a.rope_theta ** -(torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        angles = torch.outer(torch.arange(a.seq_len, dtype=torch.float64), inverse)
        both = torch.cat([angles, angles], -1)
        self.register_buffer("cos", torch.cos(both).float())
        self.register_buffer("sin", torch.sin(both).float())
        for name, p in self.named_parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, tokens):
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        weight = self.embedding.weight if self.output is None else self.output.weight
        return F.linear(self.norm(x), weight).float()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("layers", "d_model", "heads", "kv_heads", "ffn", "vocab", "seq_len", "micro_batch",
                 "grad_accum", "threads", "steps", "warmup"):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int, required=True)
    p.add_argument("--tied", type=int, default=0)
    p.add_argument("--rope-theta", dest="rope_theta", type=float, default=500000.0)
    p.add_argument("--norm-eps", dest="norm_eps", type=float, default=1e-5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=0.1)
    p.add_argument("--grad-clip", dest="grad_clip", type=float, default=1.0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    device = torch.device(a.device)
    model = Llama(a).to(device)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    windows = torch.randint(a.vocab, (a.grad_accum, a.micro_batch, a.seq_len + 1), device=device)

    def step():
        optimizer.zero_grad()
        for micro in windows:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                logits = model(micro[:, :-1])
            loss = F.cross_entropy(logits.view(-1, a.vocab), micro[:, 1:].reshape(-1))
            loss.item()
            (loss / a.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        optimizer.step()

    for _ in range(a.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / a.steps
    tokens = a.grad_accum * a.micro_batch * a.seq_len
    print(json.dumps({"tokens_per_s": tokens / seconds, "seconds_per_step": seconds, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
