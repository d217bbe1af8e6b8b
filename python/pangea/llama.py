"""The built-in model of the run manifest's [model], in PyTorch: the C++ node's Llama, with its
parameters in the same order and initialized to the same values (from [run] seed), so that
Python and C++ nodes can train one run and hold bit-identical synced parameters.

    model = pangea.Llama(node)                 # node: a pangea.Node of the run
    logits = model(tokens)                     # tokens: [batch, time] int64, logits fp32
"""
import math

import torch
import torch.nn.functional as F


class Llama(torch.nn.Module):
    def __init__(self, node):
        super().__init__()
        spec = node._core.llama()
        self.spec = spec
        self.layers = spec["layers"]
        self.heads = spec["heads"]
        self.kv_heads = spec["kv_heads"]
        self.d_model = spec["d_model"]
        self.head_dim = spec["d_model"] // spec["heads"]
        self.norm_eps = spec["norm_eps"]
        self.names = [name for name, _ in spec["layout"]]
        # As model/llama.cpp draws them: one CPU generator of [run] seed, tensor by tensor in
        # buffer order; norm gains 1, the output projections of each block (wo, w2) with a
        # smaller deviation.
        generator = torch.Generator().manual_seed(spec["seed"])
        output_std = 0.02 / math.sqrt(2.0 * self.layers)
        tensors = []
        with torch.no_grad():
            for name, shape in spec["layout"]:
                tensor = torch.empty(shape, dtype=torch.float32)
                if len(shape) == 1:
                    tensor.fill_(1.0)
                else:
                    projection = "wo" in name or "w2" in name
                    tensor.normal_(0.0, output_std if projection else 0.02, generator=generator)
                tensors.append(torch.nn.Parameter(tensor))
        # Registered in buffer order under the C++ names (dots as underscores): pangea.DiLoCo's
        # buffer is then the C++ node's.
        for name, tensor in zip(self.names, tensors):
            self.register_parameter(name.replace(".", "_"), tensor)
        self._by_name = dict(zip(self.names, tensors))
        seq_len = spec["seq_len"]
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), torch.pow(spec["rope_theta"], -exponents))
        both = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", torch.cos(both).float(), persistent=False)
        self.register_buffer("sin", torch.sin(both).float(), persistent=False)
        self.register_buffer("future", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1), persistent=False)

    def _p(self, name):
        return self._by_name[name]

    def _rms_norm(self, x, gain):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.norm_eps) * gain

    def _rotate(self, x):
        time, half = x.size(2), x.size(3) // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos[:time] + rotated * self.sin[:time]

    def _attention(self, layer, x):
        batch, time, _ = x.shape
        p = f"layers.{layer}.attention."
        q = F.linear(x, self._p(p + "wq")).view(batch, time, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, self._p(p + "wk")).view(batch, time, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, self._p(p + "wv")).view(batch, time, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rotate(q), self._rotate(k)
        if self.kv_heads != self.heads:
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(self.future[:time, :time], float("-inf"))
        y = torch.matmul(torch.softmax(scores, -1), v)
        return F.linear(y.transpose(1, 2).reshape(batch, time, self.d_model), self._p(p + "wo"))

    def forward(self, tokens):
        x = F.embedding(tokens, self._p("tok_embeddings"))
        for layer in range(self.layers):
            p = f"layers.{layer}."
            h = x + self._attention(layer, self._rms_norm(x, self._p(p + "attention_norm")))
            n = self._rms_norm(h, self._p(p + "ffn_norm"))
            ffn = F.silu(F.linear(n, self._p(p + "feed_forward.w1"))) * F.linear(n, self._p(p + "feed_forward.w3"))
            x = h + F.linear(ffn, self._p(p + "feed_forward.w2"))
        output = self._p("tok_embeddings") if self.spec["tied_embeddings"] else self._p("output")
        return F.linear(self._rms_norm(x, self._p("norm")), output)

    def loss(self, windows):
        """Mean cross-entropy of a batch of token windows ([batch, seq_len + 1], as
        Node.next_tokens gives them): inputs are the first seq_len tokens, targets the last."""
        windows = torch.as_tensor(windows, dtype=torch.int64)
        logits = self(windows[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), windows[:, 1:].reshape(-1))
