"""An exponential moving average of a network's weights.

``shadow`` is a second network of the same architecture (same parameter
names) whose trained weights follow ``w_ema <- d * w_ema + (1 - d) * w``
after every update of the source, with ``d = min(decay, (1 + t) / (10 + t))``
at update ``t`` (a warm-up: early updates average over few steps, so the
random initial weights are forgotten quickly), and whose other parameters (batch
norm's running statistics) are copies of the source's.  It lives on one
device; updates are device ops (no host read).  Sampling, the Frechet
distance and exports of a run trained with ``--ema`` use the shadow.
"""
import mxnet as mx

__all__ = ["WeightEMA"]


class WeightEMA:
    """``WeightEMA(source, shadow, decay, ctx)``: ``shadow`` (built like
    ``source``, uninitialised or not) starts as a copy of ``source``'s
    weights on ``ctx``."""

    def __init__(self, source, shadow, decay, ctx):
        if not 0 < decay < 1:
            raise ValueError("EMA decay must be in (0, 1), got %r" % decay)
        self.source, self.shadow, self.decay, self.ctx = source, shadow, decay, ctx
        src = source.collect_params()
        self.pairs = []                          # (source param, shadow param), by name
        dst = shadow.collect_params()
        if sorted(src) != sorted(dst):
            raise ValueError("the EMA network's parameters differ from the source's")
        if not all(p._data is not None for p in dst.values()):
            shadow.initialize(mx.init.Zero(), ctx=ctx)
        for name in sorted(src):
            self.pairs.append((src[name], dst[name]))
        self.copy_all()

    def copy_all(self):
        """Make the shadow an exact copy of the source (a fresh start)."""
        for p, q in self.pairs:
            p.data(self.ctx).copyto(q.data(self.ctx))

    def decay_at(self, t):
        """The decay of update ``t`` (counted from 1)."""
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def update(self, t):
        """Update ``t`` (from 1): average the trained weights, copy the rest."""
        decay = self.decay_at(t)
        for p, q in self.pairs:
            w, avg = p.data(self.ctx), q.data(self.ctx)
            if p.grad_req == "null":
                w.copyto(avg)
            else:
                avg[:] = decay * avg + (1 - decay) * w
