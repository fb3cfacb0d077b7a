"""Spectral normalisation (Miyato et al., 2018) of convolution weights.

A layer computes with ``W / sigma``, where ``sigma`` estimates the largest
singular value of ``W`` reshaped to ``(out_channels, in_channels * k * k)``
by power iteration.  The iteration's vector ``u`` (``(out_channels,)``) is
a parameter without a gradient (``sn_u``): it lives in the checkpoint beside
the weight, so a resumed run continues the same estimate.

Inside the graph (hybridized, ``F.*`` only)::

    v     = normalise(W^T u)          # held constant (no gradient)
    sigma = |W v|                     # d sigma / dW = u' v^T, u' = W v / |W v|

and once per training iteration, outside the graph (:func:`power_iteration`,
device ops, no host read) ``u <- normalise(W normalise(W^T u))``, the one
power-iteration step per update of the paper.
"""
import mxnet as mx

from . import precision

__all__ = ["SNConv2D", "power_iteration", "spectral_layers"]

EPS = 1e-12


class SNConv2D(precision.Conv2D):
    """``mxgen.nn.precision.Conv2D`` computing with its spectrally normalised
    weight (same arguments; parameters ``weight``, ``sn_u`` and ``bias``)."""

    def __init__(self, channels, *args, **kwargs):
        super().__init__(channels, *args, **kwargs)
        with self.name_scope():
            self.sn_u = self.params.get("sn_u", shape=(channels,), init=mx.init.Normal(1.0),
                                        grad_req="null", differentiable=False)

    def hybrid_forward(self, F, x, weight, sn_u, bias=None):
        return super().hybrid_forward(F, x, _normalised(F, weight, sn_u), bias)

    def normalised_weight(self, ctx=None):
        """``W / sigma`` as the graph computes it now (an NDArray)."""
        return _normalised(mx.nd, self.weight.data(ctx), self.sn_u.data(ctx))


def _normalised(F, weight, u):
    w = F.reshape(weight, (0, -1))                                     # (out, in*k*k)
    v = F.BlockGrad(_unit(F, F.dot(F.reshape(u, (1, -1)), w)))         # (1, in*k*k)
    wv = F.dot(w, v, transpose_b=True)                                 # (out, 1)
    sigma = F.sqrt(F.sum(F.square(wv)) + EPS)                          # (1,)
    return F.broadcast_div(weight, F.reshape(sigma, (1, 1, 1, 1)))


def _unit(F, x):
    return F.broadcast_div(x, F.sqrt(F.sum(F.square(x)) + EPS))


def spectral_layers(block):
    """Every :class:`SNConv2D` inside ``block``."""
    found = []
    block.apply(lambda b: found.append(b) if isinstance(b, SNConv2D) else None)
    return found


def power_iteration(layers, ctxs):
    """One power-iteration step of every layer's ``u``, on every device copy
    (their weights are equal, so their ``u`` stay equal)."""
    for layer in layers:
        for ctx in ctxs:
            u = layer.sn_u.data(ctx)
            w = layer.weight.data(ctx).reshape((0, -1))
            v = _unit(mx.nd, mx.nd.dot(u.reshape((1, -1)), w))
            u[:] = _unit(mx.nd, mx.nd.dot(w, v, transpose_b=True)).reshape((-1,))
