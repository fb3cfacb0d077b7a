"""An exponential moving average of a network's weights.

``shadow`` is a second network of the same architecture (same parameter
names) whose trained weights follow ``w_ema <- d * w_ema + (1 - d) * w``
after every update of the source, with ``d = min(decay, (1 + t) / (10 + t))``
at update ``t`` (a warm-up: early updates average over few steps, so the
random initial weights are forgotten quickly), and whose other parameters (batch
norm's running statistics) are copies of the source's.  It lives on one
device; updates are device ops (no host read).  Sampling, the Frechet
distance and exports of a run trained with ``--ema`` use the shadow.

Copied running statistics belong to the source's weights, not to their
average: a network with batch norm evaluated on averaged weights and the
source's statistics normalises with the wrong means and variances.
:meth:`WeightEMA.refresh_statistics` replaces them with the shadow's own
("standing" statistics): the mean over a few fixed batches of each batch
norm's batch statistics, computed in training mode as the network saw them.
"""
import mxnet as mx
from mxnet.gluon import nn

__all__ = ["WeightEMA", "standing_statistics"]


def standing_statistics(net, inputs):
    """Set the running mean and variance of every ``BatchNorm`` in ``net``
    (on one device) to the average over ``inputs`` (a list of NDArray
    batches) of the batch statistics each layer sees when ``net`` runs in
    training mode.  Deterministic: nothing random is drawn and the old
    statistics do not enter.  Returns the number of layers set; a network
    with a ``SyncBatchNorm`` (statistics across devices) is left as it is
    and gives 0."""
    norms = []
    net.apply(lambda b: norms.append(b) if isinstance(b, nn.BatchNorm) else None)
    if not norms or any(type(b) is not nn.BatchNorm for b in norms):
        return 0
    sums = {}

    def record(block, args):
        x = args[0].astype("float32", copy=False)
        axis = block._kwargs["axis"] % x.ndim
        mean, var = mx.nd.moments(x, axes=tuple(i for i in range(x.ndim) if i != axis))
        old = sums.get(id(block))
        sums[id(block)] = (mean, var) if old is None else (old[0] + mean, old[1] + var)

    active = getattr(net, "_active", False)
    flags = dict(getattr(net, "_flags", []))
    if active:                            # hooks run only in imperative mode
        net.hybridize(False)
    hooks = [b.register_forward_pre_hook(record) for b in norms]
    try:
        with mx.autograd.train_mode():
            for x in inputs:
                net(x)
    finally:
        for h in hooks:
            h.detach()
        if active:
            net.hybridize(True, **flags)
    for b in norms:
        mean, var = sums[id(b)]
        b.running_mean.set_data(mean / len(inputs))
        b.running_var.set_data(var / len(inputs))
    return len(norms)


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
        self.updates, self._refreshed_at = 0, None      # counts, to skip a repeated refresh
        self.copy_all()

    def copy_all(self):
        """Make the shadow an exact copy of the source (a fresh start)."""
        for p, q in self.pairs:
            p.data(self.ctx).copyto(q.data(self.ctx))
        self._refreshed_at = None

    def decay_at(self, t):
        """The decay of update ``t`` (counted from 1)."""
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def refresh_statistics(self, inputs):
        """Give the shadow its own batch-norm statistics, computed over
        ``inputs`` (see :func:`standing_statistics`); call before the shadow
        is evaluated or saved (a second call before the next update does
        nothing).  Returns the number of layers set."""
        if self._refreshed_at == self.updates:
            return 0
        self._refreshed_at = self.updates
        return standing_statistics(self.shadow, inputs)

    def update(self, t):
        """Update ``t`` (from 1): average the trained weights, copy the rest."""
        decay = self.decay_at(t)
        self.updates += 1
        for p, q in self.pairs:
            w, avg = p.data(self.ctx), q.data(self.ctx)
            if p.grad_req == "null":
                w.copyto(avg)
            else:
                avg[:] = decay * avg + (1 - decay) * w
