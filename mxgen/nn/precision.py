"""Mixed precision for MXNet's own ops: bfloat16 on CPUs, float16 on GPUs.

The layers here (:class:`Conv2D`, :class:`Conv2DTranspose`, :class:`Dense`)
are Gluon's, with one more setting, ``compute_dtype``: in ``'bfloat16'`` or
``'float16'`` they cast their input, weight and bias to that type inside the
graph (``amp_cast``, as MXNet's AMP does), run the op there and cast the
result back to float32.  So the parameters the optimizer updates, the
optimizer states, batch norm, the losses and everything between the layers
stay float32 -- the master weights of mixed-precision training -- and a
checkpoint is the same whichever precision trained it.  Unlike
``mxnet.contrib.amp.init`` nothing is patched process-wide: one network can
run in bfloat16 beside another in float32.

Gradients flow through ``amp_cast`` in float32.  float16 gradients can
underflow, so float16 training scales the loss (:class:`LossScaler`); bfloat16
has float32's exponent range and needs no scaling.

On CPUs, MXNet 1.9 runs bfloat16 convolutions and matrix products through
oneDNN, which uses AMX tiles only where ``mxgen._env.configure_onednn``
enabled them before MXNet started (see there); on AVX512_BF16 alone it is
roughly float32's speed, and without either it has no bfloat16 kernels.
:func:`explain_precision` therefore chooses by measurement.
"""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ..errors import MXGenError
from ..fields import PRECISIONS

__all__ = ["PRECISIONS", "LOW_PRECISIONS", "Mixed", "Conv2D", "Conv2DTranspose", "Dense",
           "set_compute_dtype", "compute_dtype_of", "cast", "LossScaler", "explain_precision",
           "bf16_cpu", "inference_dtype", "exported_dtype"]

LOW_PRECISIONS = ("bfloat16", "float16")
# MXNet's name for bfloat16 (numpy has none): a 16-bit record, as contrib.amp spells it
BFLOAT16 = np.dtype([("bfloat16", np.uint16)])


def _mx_dtype(dtype):
    return BFLOAT16 if dtype == "bfloat16" else dtype


def cast(F, x, dtype):
    """``x`` as ``dtype`` inside a graph (identity for float32)."""
    return x if dtype == "float32" else F.amp_cast(x, dtype=_mx_dtype(dtype))


class Mixed:
    """A layer whose op runs in ``compute_dtype`` (set by
    :func:`set_compute_dtype`), float32 outside it."""
    compute_dtype = "float32"


class _Mixed(Mixed):
    """Runs the wrapped Gluon layer's op in ``compute_dtype`` where the op
    has kernels of that type (``LOW``; ``LOW_INFERENCE`` for a network
    that only runs forward), in float32 otherwise."""
    LOW = LOW_INFERENCE = LOW_PRECISIONS
    for_training = True

    def hybrid_forward(self, F, x, weight, bias=None):
        dtype = self.compute_dtype
        if dtype not in (self.LOW if self.for_training else self.LOW_INFERENCE):
            return super().hybrid_forward(F, x, weight, bias)
        out = super().hybrid_forward(F, cast(F, x, dtype), cast(F, weight, dtype),
                                     None if bias is None else cast(F, bias, dtype))
        return F.amp_cast(out, dtype="float32")


class Conv2D(_Mixed, nn.Conv2D):
    """``gluon.nn.Conv2D`` with a ``compute_dtype`` (parameter names unchanged)."""


class Conv2DTranspose(_Mixed, nn.Conv2DTranspose):
    """``gluon.nn.Conv2DTranspose`` with a ``compute_dtype``: float16 only.
    The backward pass of MXNet 1.9.1's oneDNN bfloat16 deconvolution dies
    with SIGSEGV (any shape tried, with and without AMX; MXNet's own AMP
    lists leave Deconvolution out of bfloat16 too), so under ``'bfloat16'``
    this layer stays float32 -- except in a network set up for inference
    alone, where the forward kernel runs (~1.2x float32 with AMX)."""
    LOW = ("float16",)


class Dense(_Mixed, nn.Dense):
    """``gluon.nn.Dense`` with a ``compute_dtype``."""


def set_compute_dtype(block, dtype, for_training=True):
    """Set every mixed layer inside ``block`` to compute in ``dtype``
    (``'float32'``, ``'bfloat16'`` or ``'float16'``) and drop the cached
    graphs so the next call builds them anew.  ``for_training=False``: the
    network will only run forward (sampling, stylizing, export), which some
    ops support in more precisions.  Returns the number of layers set (0
    means ``block`` has none, and nothing changes)."""
    if dtype not in PRECISIONS[1:]:
        raise ValueError("dtype must be one of %s, got %r" % (", ".join(PRECISIONS[1:]), dtype))
    count = []

    def visit(b):
        if isinstance(b, Mixed):
            b.compute_dtype, b.for_training = dtype, for_training
            count.append(b)
        if isinstance(b, mx.gluon.HybridBlock):
            b._clear_cached_op()
    block.apply(visit)
    return len(count)


def compute_dtype_of(block):
    """The one compute dtype of ``block``'s mixed layers ('float32' if none)."""
    found = set()
    block.apply(lambda b: found.add(b.compute_dtype) if isinstance(b, Mixed) else None)
    if len(found) > 1:
        raise ValueError("layers of %s compute in %s" % (block.name, sorted(found)))
    return found.pop() if found else "float32"


class LossScaler:
    """Dynamic loss scaling for float16 training.

    The loss is multiplied by ``scale`` before the backward pass, so small
    gradients survive float16; an update whose gradient is not finite is
    skipped and the scale halved; after ``window`` finite updates in a row it
    doubles.  Knowing whether a gradient is finite takes one host read per
    step (the norm a clipped step reads anyway).  Its state is two numbers,
    saved with the checkpoint so a resume continues with the same scale."""

    def __init__(self, scale=2.0 ** 12, window=1000, low=1.0, high=2.0 ** 24):
        self.scale, self.window, self.low, self.high = float(scale), int(window), low, high
        self.good = 0

    def update(self, finite):
        """Record one step; returns True when its update should be applied."""
        if finite:
            self.good += 1
            if self.good >= self.window:
                self.scale, self.good = min(self.scale * 2, self.high), 0
            return True
        self.scale, self.good = max(self.scale / 2, self.low), 0
        return False

    def state(self):
        return {"scale": self.scale, "good": self.good}

    def load(self, state):
        self.scale, self.good = float(state["scale"]), int(state["good"])


def bf16_cpu():
    """Why oneDNN cannot run bfloat16 here (None when it can): the CPU
    lacks the instructions, or ``DNNL_MAX_CPU_ISA`` holds oneDNN below them
    (its bfloat16 primitives then fail to build)."""
    import os
    from .._env import cpu_flags
    flags = cpu_flags()
    if flags is None:
        return "the CPU's flags are unknown (no /proc/cpuinfo)"
    if not ({"avx512_bf16", "amx_bf16"} & flags):
        return "this CPU has neither AVX512_BF16 nor AMX, so oneDNN has no bfloat16 kernels"
    held = (os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("MKLDNN_MAX_CPU_ISA")
            or "ALL").upper()
    if held != "ALL" and not any(k in held for k in ("BF16", "AMX", "FP16")):
        return ("oneDNN is held to %s (DNNL_MAX_CPU_ISA), which has no bfloat16 kernels"
                % held)
    return None


def explain_precision(dtype, contexts, what, target=None, shape=None):
    """What a network of mixed layers computes in, ``(dtype, reason)``.

    ``'float32'`` always runs; ``'bfloat16'`` on CPUs whose oneDNN has
    bfloat16 kernels; ``'float16'`` on GPUs (there is no fast float16 on
    CPUs).  ``'auto'`` times ``target`` ("module:function" returning
    ``(low_ms, float32_ms)`` for ``shape`` in a child process, cached as the
    kernel choices are; see :mod:`mxgen._calibrate`) and keeps the low
    precision only where it is faster.  ``what`` names the work in the reason.
    """
    from .. import _calibrate
    if dtype not in PRECISIONS:
        raise MXGenError("unknown dtype %r; choose from %s" % (dtype, ", ".join(PRECISIONS)))
    gpu = any(c.device_type == "gpu" for c in (contexts or [mx.cpu()]))
    if dtype == "float32":
        return "float32", "float32 given"
    low = "float16" if gpu else "bfloat16"
    why_not = None
    if dtype == "float16" and not gpu:
        raise MXGenError("--dtype float16 is half precision for GPUs; on a CPU use bfloat16")
    if dtype == "bfloat16" and gpu:
        raise MXGenError("--dtype bfloat16 runs on CPUs (oneDNN); on a GPU use float16")
    if not gpu:
        why_not = bf16_cpu()
    if why_not is not None:
        if dtype != "auto":
            raise MXGenError("--dtype %s unavailable: %s" % (dtype, why_not))
        return "float32", "float32: " + why_not
    if dtype != "auto":
        return dtype, "%s given" % dtype
    if target is None or shape is None:
        raise ValueError("dtype='auto' measures both precisions and needs a target and shape")
    shape = dict(shape, device="gpu" if gpu else "cpu", low=low)
    decision = _calibrate.decide("%s_dtype" % what, shape, target, "%s in %s" % (what, low),
                                 "%s in float32" % what, "float32", label=_onednn_label(gpu))
    if decision.impl == "native":
        return low, "%s: %s" % (low, decision.reason)
    return "float32", "float32: " + decision.reason


def _onednn_label(gpu):
    if gpu:
        return "cuDNN"
    from .._env import onednn_isa
    return "oneDNN %s" % onednn_isa()



def inference_dtype(net, dtype, ctx, what, target, shape):
    """Choose what ``net`` (forward only, on ``ctx``) computes in and set it;
    returns ``(dtype, reason)``.  ``target`` and ``shape`` as for
    :func:`explain_precision`."""
    chosen, reason = explain_precision(dtype, [ctx], what, target, shape)
    set_compute_dtype(net, chosen, for_training=False)
    return chosen, reason


def exported_dtype(dtype, meta):
    """An export is a fixed graph: it computes in the precision it was
    exported in (``meta['dtype']``); asking for another is an error.
    Returns ``(dtype, reason)``."""
    fixed = meta.get("dtype", "float32")
    if dtype not in ("auto", fixed):
        raise MXGenError("this export computes in %s (mxgen export --dtype chose it); export"
                         " the checkpoint again with --dtype %s" % (fixed, dtype))
    return fixed, "the export's graph"
