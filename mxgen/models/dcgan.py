"""DCGAN: a generator of transposed convolutions and a convolutional discriminator.

Radford et al. (2016).  For 64x64 images (``image_size=64``)::

    G: z (N, latent, 1, 1)
       -> ConvT(ngf*8, 4, 1, 0) -> BN -> ReLU        (N, ngf*8, 4, 4)
       -> ConvT(ngf*4, 4, 2, 1) -> BN -> ReLU        (N, ngf*4, 8, 8)
       -> ConvT(ngf*2, 4, 2, 1) -> BN -> ReLU        (N, ngf*2, 16, 16)
       -> ConvT(ngf,   4, 2, 1) -> BN -> ReLU        (N, ngf, 32, 32)
       -> ConvT(nc,    4, 2, 1) -> tanh              (N, nc, 64, 64)

    D: x (N, nc, 64, 64)
       -> Conv(ndf, 4, 2, 1) -> LeakyReLU(0.2)        (N, ndf, 32, 32)
       -> Conv(ndf*2, 4, 2, 1) -> BN -> LeakyReLU     (N, ndf*2, 16, 16)
       -> Conv(ndf*4, 4, 2, 1) -> BN -> LeakyReLU     (N, ndf*4, 8, 8)
       -> Conv(ndf*8, 4, 2, 1) -> BN -> LeakyReLU     (N, ndf*8, 4, 4)
       -> Conv(1, 4, 1, 0)                            (N,) logit

``image_size=32`` drops one stage from each (ngf*4 / ndf*4 at 4x4).  No
convolution has a bias (a BatchNorm follows most of them, and the paper's
reference code has none on the others either); weights start from
N(0, 0.02) and BatchNorm scales from N(1, 0.02), as in the paper.
"""
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError
from ..nn import precision
from ..nn.spectral import SNConv2D
from .registry import Family, register

__all__ = ["DCGANConfig", "Generator", "Discriminator", "dcgan_generator",
           "dcgan_discriminator", "InputTangent", "dcgan_init", "generate_images", "slerp",
           "FAMILY"]


@dataclass
class DCGANConfig:
    image_size: int = 64
    latent_size: int = 100
    ngf: int = 64
    ndf: int = 64
    nc: int = 3

    def validate(self):
        if self.image_size not in (32, 64):
            raise MXGenError("DCGAN image size must be 32 or 64, got %r" % self.image_size)
        for name in ("latent_size", "ngf", "ndf"):
            if getattr(self, name) < 1:
                raise MXGenError("%s must be >= 1, got %r" % (name, getattr(self, name)))
        if self.nc not in (1, 3):
            raise MXGenError("channels (nc) must be 1 or 3, got %r" % self.nc)
        return self

    @property
    def stages(self):
        """Stride-2 stages between 4x4 and the image size."""
        return {32: 3, 64: 4}[self.image_size]

    def to_dict(self):
        return asdict(self)


class Generator(HybridBlock):
    """``z (N, latent, 1, 1)`` -> images ``(N, nc, S, S)`` in [-1, 1].

    ``sync_bn_devices`` > 1: BatchNorm statistics synchronised across that
    many GPUs (training over several ``--ctx`` GPUs with ``--sync-bn``)."""

    def __init__(self, image_size=DCGANConfig.image_size, latent_size=DCGANConfig.latent_size,
                 ngf=DCGANConfig.ngf, nc=DCGANConfig.nc, sync_bn_devices=0, **kwargs):
        super().__init__(**kwargs)
        self.config = DCGANConfig(image_size, latent_size, ngf, DCGANConfig.ndf, nc).validate()
        widths = [ngf * 2 ** i for i in reversed(range(self.config.stages))]   # e.g. 8,4,2,1
        with self.name_scope():
            self.body = nn.HybridSequential()
            for i, width in enumerate(widths):
                stride, pad = (1, 0) if i == 0 else (2, 1)
                self.body.add(precision.Conv2DTranspose(width, 4, stride, pad, use_bias=False,
                                                 in_channels=latent_size if i == 0 else widths[i - 1]),
                              _batch_norm(width, sync_bn_devices),
                              nn.Activation("relu"))
            # MXNet 1.9's oneDNN cannot run the input gradient of a transposed
            # convolution with ONE output channel when its input channels are a
            # multiple of 16 ("could not create a primitive descriptor for a
            # reorder primitive": the 16-channel-blocked weight layout it picks
            # has no reorder from a 1-channel weight), and computing a padded
            # weight inside the graph crashes its backward.  So a grayscale
            # generator's last layer has two output channels and keeps the
            # first; the second's weights get no gradient and never change.
            self.body.add(precision.Conv2DTranspose(max(nc, 2), 4, 2, 1, use_bias=False,
                                             in_channels=widths[-1]))
            if nc == 1:
                self.body.add(_FirstChannel())
            self.body.add(nn.Activation("tanh"))

    def hybrid_forward(self, F, z):
        return self.body(z)


def _batch_norm(channels, sync_devices):
    """BatchNorm, or with ``sync_devices`` > 1 MXNet's SyncBatchNorm, whose
    statistics cover the batch of all those devices (GPUs only: on CPU
    devices it waits forever).  Both hold the same four parameters, so a
    checkpoint loads into either."""
    if sync_devices > 1:
        return mx.gluon.contrib.nn.SyncBatchNorm(in_channels=channels, num_devices=sync_devices)
    return nn.BatchNorm(in_channels=channels)


class _FirstChannel(HybridBlock):
    """``(N, C, H, W)`` -> ``(N, 1, H, W)``: keeps channel 0."""

    def hybrid_forward(self, F, x):
        return F.slice_axis(x, axis=1, begin=0, end=1)


class Discriminator(HybridBlock):
    """Images ``(N, nc, S, S)`` -> one real/fake logit per image ``(N,)``.

    ``spectral_norm``: every convolution computes with its spectrally
    normalised weight (:class:`mxgen.nn.spectral.SNConv2D`).
    ``batch_norm=False``: no BatchNorm between the convolutions (SNGAN's
    discriminator), so that each image's logit depends on that image alone,
    which the R1 penalty assumes."""

    def __init__(self, image_size=DCGANConfig.image_size, ndf=DCGANConfig.ndf,
                 nc=DCGANConfig.nc, sync_bn_devices=0, spectral_norm=False, batch_norm=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.config = DCGANConfig(image_size, DCGANConfig.latent_size, DCGANConfig.ngf, ndf,
                                  nc).validate()
        self.spectral_norm, self.batch_norm = spectral_norm, batch_norm
        conv = SNConv2D if spectral_norm else precision.Conv2D
        widths = [ndf * 2 ** i for i in range(self.config.stages)]             # e.g. 1,2,4,8
        with self.name_scope():
            self.body = nn.HybridSequential()
            for i, width in enumerate(widths):
                self.body.add(conv(width, 4, 2, 1, use_bias=False,
                                   in_channels=nc if i == 0 else widths[i - 1]))
                if i > 0 and batch_norm:
                    self.body.add(_batch_norm(width, sync_bn_devices))
                self.body.add(nn.LeakyReLU(0.2))
            self.body.add(conv(1, 4, 1, 0, use_bias=False, in_channels=widths[-1]))

    def hybrid_forward(self, F, x):
        return F.reshape(self.body(x), (-1,))


class InputTangent(HybridBlock):
    """``(x, t)`` -> ``(N,)``: the derivative of a discriminator's logit at
    each image ``x`` along ``t``, ``dD(x)/dx . t``, by pushing ``t`` through
    D's layers beside ``x`` (a forward-mode pass: bias-free convolutions
    are linear, and a LeakyReLU scales ``t`` by its slope at ``x``).

    The R1 penalty's weight gradient is this block's gradient at ``t =
    dD(x)/dx`` held fixed: ``grad_w 1/2 |g|^2 = grad_w (dD/dx . g)``, a
    first derivative MXNet can take, where the direct route (differentiating
    a convolution's backward pass) has no kernels in MXNet 1.9.  D must have
    no BatchNorm (``--d-norm none``), whose batch statistics would tie each
    logit to the other images."""

    def __init__(self, disc, **kwargs):
        super().__init__(**kwargs)
        if disc.batch_norm:
            raise MXGenError("the input gradient of one image's logit needs a discriminator"
                             " without BatchNorm")
        with self.name_scope():
            self.disc = disc

    def hybrid_forward(self, F, x, t):
        for layer in self.disc.body:
            if isinstance(layer, nn.LeakyReLU):
                t = F.where(x > 0, t, t * layer._alpha)     # D's slope at x
                x = layer(x)
            else:                                             # a bias-free convolution
                x, t = layer(x), layer(t)
        return F.reshape(t, (-1,))


def dcgan_init(block, ctx=None):
    """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02),
    beta 0; a spectral norm's ``u`` N(0, 1)."""
    block.initialize(mx.init.Normal(0.02), ctx=ctx)
    for name, param in block.collect_params().items():
        if name.endswith("gamma"):
            param.set_data(mx.nd.random.normal(1.0, 0.02, shape=param.shape))
        elif name.endswith("sn_u"):
            param.set_data(mx.nd.random.normal(0.0, 1.0, shape=param.shape))
    return block


def dcgan_generator(**config):
    return Generator(**config)


def dcgan_discriminator(**config):
    return Discriminator(**config)


def generate_images(gen, noise, batch=256):
    """Images ``(N, nc, S, S)`` (NumPy, in [-1, 1]) from noise ``(N, latent, 1, 1)``
    (NumPy or NDArray), in inference mode, ``batch`` at a time."""
    ctx = gen.collect_params().list_ctx()[0]
    out = []
    with mx.autograd.predict_mode():
        for i in range(0, noise.shape[0], batch):
            out.append(gen(mx.nd.array(noise[i:i + batch], ctx=ctx)
                           if isinstance(noise, np.ndarray) else noise[i:i + batch]).asnumpy())
    return np.concatenate(out)


def slerp(a, b, t):
    """Spherical interpolation between two noise vectors (Gaussian noise keeps
    its typical norm along the way, unlike a straight line)."""
    a_n, b_n = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = np.arccos(np.clip((a_n * b_n).sum(), -1, 1))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def _prepare(loaded, ctx):
    loaded.model.hybridize(static_alloc=True)


FAMILY = register(Family(
    name="dcgan", title="DCGAN", config=DCGANConfig,
    build=lambda c: Generator(c.image_size, c.latent_size, c.ngf, c.nc, prefix="generator_"),
    params="generator.params", resume_files=("discriminator.params", "fixed_noise.nd"),
    ema_params="generator_ema.params",
    prepare=_prepare, example=lambda c: (mx.nd.zeros((1, c.latent_size, 1, 1)),),
    describes="noise (N, latent, 1, 1) -> images (N, C, S, S) in [-1, 1]"))
