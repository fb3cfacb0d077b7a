"""Normalisation layers."""
import mxnet as mx
from mxnet.gluon import HybridBlock

__all__ = ["InstanceNorm"]


class InstanceNorm(HybridBlock):
    """Instance normalisation, ``gamma * (x - mean) / sqrt(var + eps) + beta``
    per image and channel; the same parameters as ``nn.InstanceNorm``.

    MXNet's InstanceNorm operator is a plain loop on the CPU; here the two
    moments are matrix-vector products with a ones vector, which oneDNN runs
    multi-threaded (BENCHMARKS.md, "Style transfer", has the timings).
    ``(N, C, H, W)`` in and out."""

    def __init__(self, channels, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.eps = channels, eps
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(channels,), init=mx.init.One())
            self.beta = self.params.get("beta", shape=(channels,), init=mx.init.Zero())

    def hybrid_forward(self, F, x, gamma, beta):
        flat = F.reshape(x, (-3, -1))                                   # (N*C, HW)
        ones = F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1))  # (1, HW)
        size = F.reshape(F.sum(ones), (1, 1))
        mean = F.broadcast_div(F.FullyConnected(flat, ones, no_bias=True, num_hidden=1),
                               size)                                    # (NC, 1)
        square = F.broadcast_div(F.FullyConnected(F.square(flat), ones, no_bias=True,
                                                  num_hidden=1), size)
        inv_std = F.rsqrt(F.relu(square - F.square(mean)) + self.eps)
        # gamma, beta per channel -> per (image, channel) row
        per_row = F.reshape(mean, (-1, self.channels))                  # (N, C)
        scale = inv_std * F.reshape(F.broadcast_like(F.reshape(gamma, (1, -1)), per_row),
                                    (-1, 1))
        shift = F.reshape(F.broadcast_like(F.reshape(beta, (1, -1)), per_row), (-1, 1)) - \
            mean * scale
        return F.reshape_like(F.broadcast_add(F.broadcast_mul(flat, scale), shift), x)
