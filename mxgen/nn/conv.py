"""Convolution layers of the image-transformation networks."""
import mxnet as mx
from mxnet.gluon import HybridBlock

from . import precision

__all__ = ["ReflectConv", "ToRGB"]


class ReflectConv(HybridBlock):
    """Reflection padding (no border artefacts) then a convolution that keeps
    the size (stride 1) or divides it by ``stride``: ``(N, in_ch, H, W)`` ->
    ``(N, out_ch, H / stride, W / stride)``."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.pad = kernel // 2
        with self.name_scope():
            self.conv = precision.Conv2D(out_ch, kernel, stride, 0, in_channels=in_ch,
                                         use_bias=use_bias)

    def hybrid_forward(self, F, x):
        if self.pad:
            x = F.pad(x, mode="reflect", pad_width=(0, 0, 0, 0) + (self.pad,) * 4)
        return self.conv(x)


class ToRGB(precision.Mixed, HybridBlock):
    """A 9x9 convolution to 3 channels with reflection padding, ``(N, in_ch,
    H, W)`` -> ``(N, 3, H, W)``.  oneDNN runs a 3-filter convolution at a
    fraction of its speed, so the graph pads the weights with zero filters to
    16 and keeps the first 3 outputs: the same result and gradients, faster
    (BENCHMARKS.md, "Style transfer")."""

    FILTERS = 16

    def __init__(self, in_ch, **kwargs):
        super().__init__(**kwargs)
        self.in_ch = in_ch
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(3, in_ch, 9, 9),
                                          init=mx.init.Xavier(magnitude=2))
            self.bias = self.params.get("bias", shape=(3,), init=mx.init.Zero())

    def hybrid_forward(self, F, x, weight, bias):
        extra = self.FILTERS - 3
        weight = F.concat(weight, F.zeros((extra, self.in_ch, 9, 9)), dim=0)
        bias = F.concat(bias, F.zeros((extra,)), dim=0)
        x = F.pad(x, mode="reflect", pad_width=(0, 0, 0, 0, 4, 4, 4, 4))
        dtype = self.compute_dtype
        out = F.Convolution(precision.cast(F, x, dtype), precision.cast(F, weight, dtype),
                            precision.cast(F, bias, dtype), kernel=(9, 9),
                            num_filter=self.FILTERS)
        out = F.slice_axis(out, axis=1, begin=0, end=3)
        return out if dtype == "float32" else F.amp_cast(out, dtype="float32")
