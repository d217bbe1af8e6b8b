"""Pangea for PyTorch: DiLoCo over Pangea's C++ core, for any model on any device.

    import pangea
    node = pangea.Node("run.toml", node_id=0)            # joins the mesh, loads the plugins
    diloco = pangea.DiLoCo(node, model, inner_optimizer)  # any torch.nn.Module, any device
    for batch in loader:
        loss = loss_fn(model(batch)); loss.backward()
        inner_optimizer.step(); inner_optimizer.zero_grad()
        diloco.step(loss)   # counts inner steps; every [diloco] inner_steps it runs the outer step
    diloco.finish()

The run manifest and the plugins are the C++ node's (docs/manifest.md); docs/python.md says what
a Python node reads from it and how it differs from `pangea run`.
"""

import io
import os
import time

from ._pangea import Error
from ._pangea import Node as _CoreNode

__all__ = ["Error", "Node", "DiLoCo", "Llama"]


def __getattr__(name):
    if name == "Llama":  # imports torch: only when asked for
        from .llama import Llama

        return Llama
    raise AttributeError(f"module 'pangea' has no attribute '{name}'")


def _from_environment(variable, what):
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"{what} is not given, and {variable} is not set (pangea launch sets it for a [run] entry)")
    return value


class Node:
    """One node of a run: the manifest, the plugins and the mesh (the core's part).

    manifest: path of the run manifest (TOML). node_id: 0 .. [mesh] nodes - 1.
    join: start as a late joiner. set: overrides "section.key=value", as `pangea run --set`.
    run_id: the run's id as the coordinator knows it (0: derived from [run] name).
    resume: "latest" (the newest step the whole run committed) or an outer step: start from the
    run's checkpoint ([checkpoint]; the model and both optimizers are taken up when DiLoCo
    attaches them). Empty: start afresh, which is refused where checkpoints of the run already
    are, unless fresh=True (delete them) or join=True.
    Under `pangea launch` (a manifest with [run] entry) each of them comes from the environment
    when not given: PANGEA_LAUNCH_MANIFEST, PANGEA_LAUNCH_NODE_ID, PANGEA_LAUNCH_RUN_ID and
    PANGEA_LAUNCH_SET (one override per line, applied before `set`), PANGEA_LAUNCH_RESUME and
    PANGEA_LAUNCH_FRESH.
    Raises pangea.Error with the core's message for a bad manifest, a plugin or the mesh.
    """

    def __init__(self, manifest=None, node_id=None, *, join=False, set=(), run_id=None, resume=None, fresh=None):
        manifest = manifest if manifest is not None else _from_environment("PANGEA_LAUNCH_MANIFEST", "the manifest")
        node_id = node_id if node_id is not None else int(_from_environment("PANGEA_LAUNCH_NODE_ID", "node_id"))
        run_id = run_id if run_id is not None else int(os.environ.get("PANGEA_LAUNCH_RUN_ID") or 0)
        launched = [line for line in os.environ.get("PANGEA_LAUNCH_SET", "").splitlines() if line.strip()]
        resume = resume if resume is not None else os.environ.get("PANGEA_LAUNCH_RESUME", "")
        fresh = fresh if fresh is not None else bool(os.environ.get("PANGEA_LAUNCH_FRESH"))
        self._core = _CoreNode(str(manifest), int(node_id), bool(join), launched + [str(s) for s in set], int(run_id),
                               str(resume), bool(fresh))

    @property
    def node_id(self):
        return self._core.node_id

    @property
    def nodes(self):
        return self._core.nodes

    @property
    def inner_steps(self):
        """[diloco] inner_steps: inner steps between two outer steps (H)."""
        return self._core.inner_steps

    @property
    def outer_steps(self):
        """[diloco] outer_steps: how many outer steps the run is planned for."""
        return self._core.outer_steps

    def leave(self):
        """Leaves the run at once (the others do not wait for this node's timeout)."""
        self._core.leave()

    def setting(self, section, key):
        """A core setting of the manifest, typed as docs/manifest.md declares it."""
        return self._core.setting(section, key)

    def next_tokens(self, sequences):
        """This node's next `sequences` training windows of [data] (seq_len + 1 tokens each, a
        numpy int32 array), as the C++ node reads its share of the data."""
        return self._core.next_tokens(int(sequences))

    def skip_data_to(self, sequences):
        """Goes on from the data position after `sequences` windows (after a recovery or resume)."""
        self._core.skip_data_to(int(sequences))


class DiLoCo:
    """DiLoCo around the user's model and inner optimizer; the user keeps the training loop.

    The synced parameters and the outer optimizer's state live in host memory (in the core); the
    model's parameters may live on any device. Every inner_steps calls of step(), the model's
    parameters are copied into a host buffer (pinned when they are on a GPU), the core averages
    the pseudo-gradients over the nodes and steps the outer optimizer, and the synced parameters
    are copied back into the model. Every node must start from the same parameters (seed the
    model's initialization alike).
    """

    def __init__(self, node, model, inner_optimizer):
        import torch

        self.node = node
        self.model = model
        self.inner_optimizer = inner_optimizer
        named = list(model.named_parameters())
        self._params = [p for _, p in named]
        if not self._params:
            raise ValueError("the model has no parameters")
        count = sum(p.numel() for p in self._params)
        on_gpu = any(p.device.type == "cuda" for p in self._params)
        self._host = torch.empty(count, dtype=torch.float32, pin_memory=on_gpu)
        self._copy_from_model()
        self._inner = 0
        self._losses = []
        self.last_report = None
        # A resumed node takes up its checkpoint here (through _take_up_inner).
        node._core.attach(self._host.numpy(), self._save_inner, self._take_up_inner, [n for n, _ in named],
                          [list(p.shape) for p in self._params])
        # A late joiner takes up a member's state (the model's parameters, both optimizers') here.
        self.recovered_at = node._core.start() or None
        self._round_start = time.perf_counter()

    @property
    def outer_step(self):
        """Outer steps done so far (after a recovery: the run's)."""
        return self._inner // self.node.inner_steps

    @property
    def inner_step(self):
        """Inner steps done so far, counted as the run counts them (after a recovery: from the
        recovered outer step on): where a data loader that can seek should go on."""
        return self._inner

    def _save_inner(self):
        import torch

        buffer = io.BytesIO()
        torch.save(self.inner_optimizer.state_dict(), buffer)
        return buffer.getvalue()

    def _take_up_inner(self, state, outer_step):
        # Called by the core during live recovery or a resume, once it has put the synced
        # parameters into the host buffer: they go into the model, the inner optimizer takes up
        # the peer's (or the checkpoint's) state.
        import torch

        self.inner_optimizer.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu"))
        self._copy_to_model()
        self._inner = outer_step * self.node.inner_steps
        self._losses.clear()

    def _pairs(self):
        """Each parameter with its slice of the host buffer."""
        offset = 0
        for p in self._params:
            yield p, self._host[offset:offset + p.numel()]
            offset += p.numel()

    def _copy_from_model(self):
        import torch

        with torch.no_grad():
            for p, host in self._pairs():
                host.copy_(p.detach().reshape(-1), non_blocking=True)
            if any(p.device.type == "cuda" for p in self._params):
                torch.cuda.synchronize()

    def _copy_to_model(self):
        import torch

        with torch.no_grad():
            for p, host in self._pairs():
                p.copy_(host.view(p.shape))

    def step(self, loss=None):
        """After each inner step (the inner optimizer's step). Every inner_steps calls it runs
        the outer step and returns its report (a dict: outer_step, params_hash, members, bytes
        sent, seconds); otherwise None. `loss` (a float or a 0-d tensor) goes to the metrics.

        A node the run dropped (it stalled past [mesh] timeout_ms) takes up a member's state
        instead: the report then says recovered=True, and outer_step is the run's.

        With [diloco] quorum, a node the others wait for (a straggler) is told to wrap up: the
        outer step runs after the inner step it is in, its contribution weighed by the inner
        steps it trained (trained_inner_steps in the report), and inner_step jumps to the
        round's end (a loader that can seek skips the batches left out, as the C++ node does)."""
        self._inner += 1
        if loss is not None:
            self._losses.append(float(loss))
        into_round = self._inner % self.node.inner_steps
        trained = into_round or self.node.inner_steps
        if into_round != 0:
            if not self.node._core.wrap_up_requested():
                return None
            self._inner += self.node.inner_steps - into_round  # (wrapped up)
        compute = time.perf_counter() - self._round_start
        self._copy_from_model()
        mean_loss = sum(self._losses) / len(self._losses) if self._losses else 0.0
        self.last_report = self.node._core.sync(compute, mean_loss, trained)
        if not self.last_report["recovered"]:
            self._copy_to_model()
        self._losses.clear()
        self._round_start = time.perf_counter()
        return self.last_report

    def finish(self):
        """The end of training: the model holds the final synced parameters; the summary is
        written and the node leaves the run. Returns the parameters' hash (as the C++ node prints)."""
        params_hash = self.node._core.finish()
        self._copy_to_model()
        return params_hash
