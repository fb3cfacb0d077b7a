"""Parsing ``--ctx`` strings into MXNet contexts, with clear errors."""
import mxnet as mx

from ..errors import MXGenError

__all__ = ["parse_ctx", "num_gpus", "check_batch_split"]


def num_gpus():
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # a CPU-only build
        return 0


def parse_ctx(spec):
    """``'cpu'``, ``'cpu:0,1'``, ``'gpu'``, ``'gpu:0,1'`` -> list of contexts.

    CPU indices are virtual devices that share the cores (useful for testing
    multi-device code); GPU indices must exist.
    """
    spec = (spec or "cpu").strip().lower()
    kind, _, ids = spec.partition(":")
    if kind not in ("cpu", "gpu"):
        raise MXGenError("unknown device %r: use cpu, cpu:0,1, gpu or gpu:0,1" % spec)
    try:
        indices = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise MXGenError("bad device list %r: indices must be integers, e.g. gpu:0,1" % spec) \
            from None
    if len(set(indices)) != len(indices) or min(indices) < 0:
        raise MXGenError("bad device list %r: indices must be distinct and >= 0" % spec)
    if kind == "gpu":
        available = num_gpus()
        missing = [i for i in indices if i >= available]
        if missing:
            raise MXGenError("device gpu:%d does not exist: this machine has %d GPU(s)%s"
                             % (missing[0], available,
                                "" if available else " (or mxnet was installed without CUDA)"))
        return [mx.gpu(i) for i in indices]
    return [mx.cpu(i) for i in indices]


def check_batch_split(batch_size, ctxs):
    """Data-parallel batches must divide evenly, so every device does equal work."""
    if batch_size < len(ctxs):
        raise MXGenError("batch size %d is smaller than the number of devices (%d)"
                         % (batch_size, len(ctxs)))
    if batch_size % len(ctxs):
        raise MXGenError("batch size %d does not divide evenly over %d devices; use a multiple"
                         " of %d" % (batch_size, len(ctxs), len(ctxs)))
