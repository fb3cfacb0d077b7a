"""The feed-forward style network (Johnson et al. 2016, with Ulyanov's
instance normalisation), a model family: ``train-style`` trains it,
``stylize --method net`` runs it.

The losses live in :mod:`mxgen.nn.style_loss`, the feature networks they are
measured through in :mod:`mxgen.models.features`.
"""
from dataclasses import dataclass

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError
from ..fields import field
from ..nn.conv import ReflectConv, ToRGB
from ..nn.norm import InstanceNorm
from .registry import Family, register

__all__ = ["StyleNetConfig", "TransformerNet", "FAMILY"]


@dataclass
class StyleNetConfig:
    """Hyper-parameters of :class:`TransformerNet` (saved in every checkpoint)."""
    width: int = field(32, "channels of the network's first layer", group="model")
    residual: int = field(5, "residual blocks", group="model")

    def validate(self):
        for name in ("width", "residual"):
            if not getattr(self, name) >= 1:
                raise MXGenError("%s must be >= 1, got %r" % (name, getattr(self, name)))
        return self


class _ConvNormReLU(HybridBlock):
    def __init__(self, in_ch, out_ch, kernel, stride=1, upsample=False, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.upsample, self.relu = upsample, relu
        with self.name_scope():
            # no bias: the instance norm right after removes any constant
            self.conv = ReflectConv(in_ch, out_ch, kernel, stride, use_bias=False)
            self.norm = InstanceNorm(out_ch)

    def hybrid_forward(self, F, x):
        if self.upsample:       # nearest-neighbour x2, then a convolution: no checkerboard
            x = F.UpSampling(x, scale=2, sample_type="nearest")
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class _Residual(HybridBlock):
    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.a = _ConvNormReLU(channels, channels, 3)
            self.b = _ConvNormReLU(channels, channels, 3, relu=False)

    def hybrid_forward(self, F, x):
        return x + self.b(self.a(x))


class TransformerNet(HybridBlock):
    """Images ``(N, 3, H, W)`` in [0, 1] -> stylised images ``(N, 3, H, W)``
    (H, W multiples of 4; values may leave [0, 1] slightly: clip to save).

    Johnson et al.'s image-transformation network: a 9x9 convolution, two
    stride-2 downsamplings, ``residual`` residual blocks, two
    nearest-neighbour upsamplings each followed by a convolution (instead of
    transposed convolutions, which leave checkerboard artefacts), a 9x9
    convolution to RGB.  Reflection padding and instance normalisation
    throughout; ``width`` is the first layer's channels (32 in the paper).
    """

    def __init__(self, width=StyleNetConfig.width, residual=StyleNetConfig.residual, **kwargs):
        super().__init__(**kwargs)
        self.config = StyleNetConfig(width, residual).validate()
        w = width
        with self.name_scope():
            self.body = nn.HybridSequential()
            self.body.add(_ConvNormReLU(3, w, 9), _ConvNormReLU(w, 2 * w, 3, 2),
                          _ConvNormReLU(2 * w, 4 * w, 3, 2))
            for _ in range(residual):
                self.body.add(_Residual(4 * w))
            self.body.add(_ConvNormReLU(4 * w, 2 * w, 3, upsample=True),
                          _ConvNormReLU(2 * w, w, 3, upsample=True), ToRGB(w))

    def hybrid_forward(self, F, x):
        return self.body(x)

    def flops_per_pixel(self):
        """Convolution FLOPs of one forward pass per output pixel."""
        w, r = self.config.width, self.config.residual
        full = 2 * 81 * 3 * w + 2 * 81 * w * 3                     # the two 9x9 layers
        half = 2 * 9 * w * 2 * w / 4 + 2 * 9 * 2 * w * w            # down 1 / up 2 (at 1/2, 1)
        quarter = 2 * 9 * 2 * w * 4 * w / 16 + r * 2 * (2 * 9 * (4 * w) ** 2) / 16
        up1 = 2 * 9 * 4 * w * 2 * w / 4                             # up 1 at 1/2
        return full + half + quarter + up1


def _prepare(loaded, ctx):
    loaded.model.hybridize(static_alloc=True)


FAMILY = register(Family(
    name="style_net", title="style network", config=StyleNetConfig,
    build=lambda config: TransformerNet(config.width, config.residual, prefix="transformer_"),
    params="transformer.params", prepare=_prepare,
    example=lambda config: (mx.nd.zeros((1, 3, 64, 64)),),
    describes="images (N, 3, H, W) in [0, 1], H and W multiples of 4 -> stylised images",
    export_info=lambda loaded: dict(width=loaded.config.width, residual=loaded.config.residual,
                                    style=loaded.meta.get("style"))))
