"""Frechet distance between real and generated images in a feature space.

FD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

Feature networks, by name (every report states which one was used, because
distances from different feature spaces are not comparable):

* ``inception_v3``: gluoncv's ImageNet Inception-v3, 2048-d pooled features of
  299x299 inputs (the usual FID).  Used only when its pretrained weights are
  already on disk (``~/.mxnet/models/inceptionv3-*.params``): nothing is
  downloaded unless ``allow_download=True``.
* ``random_conv_v1`` (fallback): a fixed, randomly initialised 4-stage
  convolutional network (seed 0, 3x3 convs of 32-64-128-256 channels with
  stride 2 and ReLU, global average and max pooling -> 512-d).  Random
  convolutional features are a weaker but usable measure of distribution
  distance; the numbers are only comparable among random_conv_v1 reports.
"""
import glob
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

__all__ = ["frechet_distance", "FrechetFeatures", "RandomConvFeatures", "frechet_features"]


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two ``(n, d)`` feature sets."""
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((A B)^1/2) = sum sqrt(eig(A^1/2 B A^1/2)), all symmetric PSD
    vals, vecs = np.linalg.eigh(cov_a)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


class RandomConvFeatures(HybridBlock):
    """The fallback feature network (see module docstring)."""

    NAME = "random_conv_v1"

    def __init__(self, channels=3, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential()
            in_ch = channels
            for width in (32, 64, 128, 256):
                self.body.add(nn.Conv2D(width, 3, 2, 1, in_channels=in_ch), nn.Activation("relu"))
                in_ch = width

    def hybrid_forward(self, F, x):
        h = self.body(x)                                                # (N, 256, s, s)
        return F.concat(F.mean(h, axis=(2, 3)), F.max(h, axis=(2, 3)), dim=1)   # (N, 512)


class FrechetFeatures:
    """The feature space of the Frechet distance, named (``name``): wraps a
    network (a block or a callable on NDArrays), ``features(images in
    [-1, 1]) -> (N, d) numpy``."""

    def __init__(self, name, block, input_size=None, ctx=None):
        self.name, self.block, self.input_size = name, block, input_size
        self.ctx = ctx or mx.cpu()

    def features(self, images, batch_size=100):
        out = []
        for i in range(0, len(images), batch_size):
            x = mx.nd.array(images[i:i + batch_size], ctx=self.ctx)
            if x.shape[1] == 1:
                x = mx.nd.tile(x, (1, 3, 1, 1)) if self.name == "inception_v3" else x
            if self.input_size and x.shape[2] != self.input_size:
                x = mx.nd.contrib.BilinearResize2D(x, height=self.input_size,
                                                   width=self.input_size)
            with mx.autograd.predict_mode():
                out.append(self.block(x).asnumpy())
        return np.concatenate(out)


def _inception_weights_on_disk():
    root = os.path.join(os.environ.get("MXNET_HOME", os.path.expanduser("~/.mxnet")), "models")
    return sorted(glob.glob(os.path.join(root, "inceptionv3-*.params")))


def frechet_features(channels=3, ctx=None, prefer="inception_v3", allow_download=False):
    """Inception-v3 when its weights are present (or downloads are allowed),
    else the random-conv fallback."""
    ctx = ctx or mx.cpu()
    if prefer == "inception_v3" and (allow_download or _inception_weights_on_disk()):
        from gluoncv.model_zoo import get_model
        net = get_model("inceptionv3", pretrained=True, ctx=ctx)
        features = net.features          # ends with global pooling: (N, 2048, 1, 1)

        mean = mx.nd.array([0.485, 0.456, 0.406], ctx=ctx).reshape((1, 3, 1, 1))
        std = mx.nd.array([0.229, 0.224, 0.225], ctx=ctx).reshape((1, 3, 1, 1))

        def pooled(x):                   # [-1, 1] -> ImageNet normalisation -> (N, 2048)
            x = mx.nd.broadcast_div(mx.nd.broadcast_sub((x + 1) / 2, mean), std)
            return mx.nd.flatten(features(x))
        return FrechetFeatures("inception_v3", pooled, input_size=299, ctx=ctx)
    net = RandomConvFeatures(channels)
    rng = np.random.RandomState(0)      # fixed weights, without touching MXNet's RNG stream
    net.initialize(mx.init.Zero(), ctx=ctx)
    for name, param in sorted(net.collect_params().items()):
        shape = param.shape
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        value = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape) if name.endswith("weight") \
            else np.zeros(shape)
        param.set_data(mx.nd.array(value, ctx=ctx))
    net.hybridize(static_alloc=True)
    return FrechetFeatures(RandomConvFeatures.NAME, net, ctx=ctx)
