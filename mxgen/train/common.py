"""Pieces every training loop shares: seeding, gradient norms, schedules."""
import dataclasses
import hashlib
import math

import time

import mxnet as mx
import numpy as np

from ..errors import MXGenError

__all__ = ["derive_seed", "global_grad_norm", "clip_batch_scale",
           "LRSchedule", "params_finite", "save_parameters", "load_parameters", "stop_reason",
           "merge_resumed"]


def derive_seed(seed, *keys):
    """A well-mixed 31-bit seed from a base seed and counters (e.g. the step)."""
    h = hashlib.blake2b(repr((seed,) + keys).encode(), digest_size=4).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


def global_grad_norm(params, ctx):
    """L2 norm over all gradients held on ``ctx`` (an NDArray of shape (1,))."""
    grads = [p.grad(ctx) for p in params if p.grad_req != "null"]
    sum_sq = mx.nd.multi_sum_sq(*grads, num_arrays=len(grads))
    return mx.nd.sqrt(mx.nd.sum(sum_sq))


def clip_batch_scale(norm, normaliser, max_norm):
    """The ``batch_size`` to pass to ``trainer.update`` so that the update uses
    ``grad / normaliser`` clipped to global norm ``max_norm``.

    ``norm`` is the norm of the summed (un-normalised) gradient.
    """
    mean_norm = norm / normaliser
    if max_norm and mean_norm > max_norm:
        return normaliser * mean_norm / max_norm
    return normaliser


class LRSchedule:
    """Learning-rate schedules: ``constant``, ``cosine`` (over all steps), or
    ``plateau`` (multiply by ``decay`` when validation stops improving)."""

    KINDS = ("constant", "cosine", "plateau")

    def __init__(self, kind, base_lr, total_steps=None, decay=0.5, min_lr=1e-5, state=None):
        if kind not in self.KINDS:
            raise ValueError("unknown lr schedule %r; choose from %s" % (kind, ", ".join(self.KINDS)))
        self.kind, self.base_lr, self.total_steps = kind, base_lr, total_steps
        self.decay, self.min_lr = decay, min_lr
        self.plateau_lr, self.best = base_lr, None
        if state:
            self.plateau_lr, self.best = state["plateau_lr"], state.get("best")

    def state(self):
        return {"plateau_lr": self.plateau_lr, "best": self.best}

    def lr_at(self, step):
        if self.kind == "cosine" and self.total_steps:
            frac = min(step / self.total_steps, 1.0)
            return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac))
        if self.kind == "plateau":
            return self.plateau_lr
        return self.base_lr

    def on_validation(self, value):
        """Call once per epoch with the validation loss."""
        if self.best is None or value < self.best:
            self.best = value
        elif self.kind == "plateau":
            self.plateau_lr = max(self.plateau_lr * self.decay, self.min_lr)


# Reading a live weight array back to the host (asnumpy, copyto, save_parameters)
# makes MXNet reorder it out of oneDNN's layout in place, and the fused RNN then
# runs ~25% slower for the rest of training.  So checkpoint code reads weights
# only through an operator that writes a fresh array.

def _snapshot(param):
    data = param.list_data()[0]
    return mx.nd.identity(data) if data.stype == "default" else data.copy()


def params_finite(params):
    """True if every parameter value is finite (checked before saving)."""
    arrays = [p.list_data()[0] for p in params]
    sums = mx.nd.multi_sum_sq(*arrays, num_arrays=len(arrays))
    return bool(np.isfinite(sums.asnumpy()).all())


def save_parameters(block, path):
    """``block.save_parameters(path)`` without disturbing oneDNN weight layouts;
    the file is the same format (``load_parameters`` reads it)."""
    params = block._collect_params_with_prefix()
    mx.nd.save(path, {key: _snapshot(p).as_in_context(mx.cpu()) for key, p in params.items()})


def load_parameters(block, path, ctx, what="this model"):
    """``block.load_parameters`` with a one-line error when the file does not fit."""
    try:
        block.load_parameters(path, ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MXGenError("parameters in %s do not fit %s (different shape or architecture?):"
                         " %s" % (path, what, first[:300])) from None


def stop_reason(cfg, started, steps_this_run):
    """Why a run should stop now (``max_steps`` or ``time budget``), else None."""
    if cfg.max_steps is not None and steps_this_run >= cfg.max_steps:
        return "max_steps"
    if cfg.max_minutes is not None and time.time() - started >= cfg.max_minutes * 60:
        return "time budget"
    return None


# Run-length settings that belong to the run, not to one invocation: a
# resume keeps the checkpoint's value unless the option is given again.
KEPT_ON_RESUME = ("epochs", "save_every", "log_interval")


def merge_resumed(config_cls, saved, cfg, explicit, log=None):
    """The configuration of a resumed run.

    The checkpoint's settings win.  Run-length settings
    (``config_cls.RUN_LENGTH``) come from this invocation, except the run's
    own budget and cadence (:data:`KEPT_ON_RESUME`: a 100-epoch run resumed
    without ``--epochs`` still has 100 epochs), which change only when given
    explicitly, as do the overridable ones (``RESUME_OVERRIDABLE``); any other
    explicit setting that differs from the checkpoint's is an error naming
    it.  ``log`` gets one line per setting the user changed.
    """
    merged = dict(saved)
    for key in config_cls.RUN_LENGTH:
        if key in KEPT_ON_RESUME and key in saved and key not in explicit:
            continue
        merged[key] = getattr(cfg, key)
    overridable = getattr(config_cls, "RESUME_OVERRIDABLE", ())
    for key in explicit:
        value = getattr(cfg, key)
        if key in config_cls.RUN_LENGTH:
            if key in KEPT_ON_RESUME and key in saved and saved[key] != value and log:
                log("resuming with %s=%r (the run had %r)" % (key, value, saved[key]))
            continue
        if key in overridable:
            if key in saved and saved[key] != value and log:
                log("resuming with %s=%r (the run had %r)" % (key, value, saved[key]))
            merged[key] = value
        elif key in saved and saved[key] != value:
            raise MXGenError("cannot resume: the checkpoint was trained with %s=%r, but %r was"
                             " given; drop the option or start a new --out"
                             % (key, saved[key], value))
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in merged.items() if k in names})
