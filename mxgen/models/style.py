"""Neural style transfer: feature networks, losses, and the feed-forward
image-transformation network.

Feature networks (``FeatureNet``; images ``(N, 3, H, W)`` RGB in [0, 1] ->
the feature maps of the style taps, then the content tap):

* ``vgg16`` / ``vgg19``: gluoncv's VGG, convolutional layers only up to the
  deepest tap, ImageNet normalisation inside.  Pretrained weights come from
  the MXNet model cache (gluoncv's own ``vgg16-*.params`` files under
  ``$MXNET_HOME/models``) or a file given by the user; nothing downloads.
  Taps: Johnson et al.'s for VGG-16 (style relu1_2, relu2_2, relu3_3,
  relu4_3; content relu2_2), Gatys et al.'s for VGG-19 (style relu1_1 ...
  relu5_1; content relu4_2).
* ``random_multiscale_v1`` (the offline default): four stages of 3x3
  convolutions with FIXED random weights (He-normal from a fixed NumPy
  seed), average pooling between stages.  Random-weight convolutional
  features carry texture statistics well enough for style synthesis (Ulyanov
  et al. 2016; He et al., "A Powerful Generative Model Using Random Weights",
  2016); pretrained VGG gives better results, and every report names the
  network used.

Losses (:class:`StyleLoss`), each normalised by its target's energy so that
the same weights suit feature networks whose activations differ by orders of
magnitude:

* content: ``mean((F - P)^2) / mean(P^2)`` at the content tap, per image;
* style: sum over style taps of ``mean((G - A)^2) / mean(A^2)``, with Gram
  matrices ``G = F F^T / (C H W)`` (``F`` the ``(C, H*W)`` feature map);
* total variation: mean squared difference of neighbouring pixels.
"""
import glob
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError, one_line

__all__ = ["FEATURE_NETS", "FeatureNet", "get_feature_net", "gram_matrix", "StyleLoss",
           "TransformerNet", "RANDOM_NET", "vgg_weights_in_cache", "content_features",
           "style_grams", "style_targets"]

RANDOM_NET = "random_multiscale_v1"
FEATURE_NETS = (RANDOM_NET, "vgg16", "vgg19")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# features index of each tap (the ReLU after the named convolution)
VGG_TAPS = {
    "vgg16": {"style": (3, 8, 15, 22), "content": 8,
              "names": "style relu1_2, relu2_2, relu3_3, relu4_3; content relu2_2"},
    "vgg19": {"style": (1, 6, 11, 20, 29), "content": 22,
              "names": "style relu1_1, relu2_1, relu3_1, relu4_1, relu5_1; content relu4_2"},
}


def gram_matrix(F, feat):
    """``(N, C, H, W)`` -> ``(N, C, C)``: ``F F^T / (C H W)``."""
    flat = F.reshape(feat, (0, 0, -1))                                  # (N, C, HW)
    gram = F.batch_dot(flat, flat, transpose_b=True)                    # (N, C, C)
    # C * H * W without reading shapes (the graph serves every image size)
    size = F.sum(F.ones_like(flat), axis=(1, 2))                        # (N,)
    return F.broadcast_div(gram, F.reshape(size, (-1, 1, 1)))


class FeatureNet(HybridBlock):
    """Images ``(N, 3, H, W)`` in [0, 1] -> ``(style taps..., content tap)``.

    ``layers``: the blocks in order; ``style_taps`` / ``content_tap``:
    indices into them; ``normalize``: ImageNet mean/std first (VGG);
    ``net_name`` says which network this is, for reports.  Its weights never
    train (``grad_req`` null)."""

    def __init__(self, layers, style_taps, content_tap, net_name, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.style_taps, self.content_tap = tuple(style_taps), content_tap
        self.net_name = net_name
        deepest = max(self.style_taps + (content_tap,))
        with self.name_scope():
            self.body = nn.HybridSequential()
            for layer in layers[:deepest + 1]:
                self.body.add(layer)
            self.rgb_mean = self.params.get_constant(
                "rgb_mean", np.array(IMAGENET_MEAN if normalize else (0, 0, 0),
                                     dtype=np.float32).reshape((1, 3, 1, 1)))
            self.rgb_std = self.params.get_constant(
                "rgb_std", np.array(IMAGENET_STD if normalize else (1, 1, 1),
                                    dtype=np.float32).reshape((1, 3, 1, 1)))

    @property
    def num_style(self):
        return len(self.style_taps)

    def hybrid_forward(self, F, x, rgb_mean, rgb_std):
        x = F.broadcast_div(F.broadcast_sub(x, rgb_mean), rgb_std)
        style, content = [], None
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.style_taps:
                style.append(x)
            if i == self.content_tap:
                content = x
        return tuple(style) + (content,)


def _random_layers(seed=1234):
    """random_multiscale_v1: (64, 128, 256, 512) channels of 3x3 convolutions,
    average pooling between stages; weights He-normal from NumPy's seeded
    generator (the same on every machine), zero biases."""
    rng = np.random.RandomState(seed)
    layers, in_ch = [], 3
    for stage, width in enumerate((64, 128, 256, 512)):
        if stage:
            layers.append(nn.AvgPool2D(2, 2))
        conv = nn.Conv2D(width, 3, 1, 1, in_channels=in_ch)
        conv.initialize(mx.init.Zero())
        conv.weight.set_data(mx.nd.array(rng.normal(0, np.sqrt(2.0 / (9 * in_ch)),
                                                    size=conv.weight.shape)))
        layers += [conv, nn.Activation("relu")]
        in_ch = width
    return layers          # ReLU taps: 1, 4, 7, 10


def _model_cache():
    return os.path.join(os.path.expanduser(os.environ.get("MXNET_HOME", "~/.mxnet")), "models")


def vgg_weights_in_cache(name):
    """gluoncv's pretrained file for ``name`` in the MXNet model cache, or None."""
    found = sorted(glob.glob(os.path.join(_model_cache(), "%s-*.params" % name)))
    return found[-1] if found else None


def get_feature_net(name=RANDOM_NET, params=None, ctx=None):
    """The feature network ``name`` on ``ctx``, hybridized, weights fixed.

    ``vgg16`` / ``vgg19`` need pretrained weights: ``params`` (a file) or
    gluoncv's file in the MXNet model cache; without either this raises an
    error that says how to get them.  Returns ``(net, description)``."""
    ctx = ctx or mx.cpu()
    if name not in FEATURE_NETS:
        raise MXGenError("unknown feature network %r; choose from %s"
                         % (name, ", ".join(FEATURE_NETS)))
    if name == RANDOM_NET:
        net = FeatureNet(_random_layers(), (1, 4, 7, 10), 7, RANDOM_NET, normalize=False,
                         prefix="featnet_")
        net.body.collect_params().reset_ctx(ctx)
        net.rgb_mean.initialize(ctx=ctx)
        net.rgb_std.initialize(ctx=ctx)
        description = ("%s (fixed random weights; style taps after each of 4 stages, content"
                       " after stage 3; pretrained VGG gives better results)" % RANDOM_NET)
    else:
        net, description = _vgg(name, params, ctx)
    for p in net.collect_params().values():
        p.grad_req = "null"
    net.hybridize(static_alloc=True)
    return net, description


def _vgg(name, params, ctx):
    import gluoncv
    path = params or vgg_weights_in_cache(name)
    if path is None:
        raise MXGenError(
            "--feature-net %s needs pretrained weights, and none are in the MXNet model cache"
            " (%s): on a machine with network access run python -c \"import gluoncv;"
            " gluoncv.model_zoo.get_model('%s', pretrained=True)\" (it saves them there), or"
            " pass --vgg-params FILE; without them use --feature-net %s"
            % (name, _model_cache(), name, RANDOM_NET))
    if not os.path.isfile(path):
        raise MXGenError("VGG weights file not found: %s" % path)
    full = gluoncv.model_zoo.get_model(name, pretrained=False)
    try:
        full.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError, KeyError, RuntimeError,
            IndexError) as err:
        raise MXGenError("%s does not hold %s weights (%s)" % (path, name, one_line(err, 200))) \
            from None
    taps = VGG_TAPS[name]
    layers = list(full.features)
    net = FeatureNet(layers, taps["style"], taps["content"], name, normalize=True,
                     prefix="featnet_")
    net.rgb_mean.initialize(ctx=ctx)
    net.rgb_std.initialize(ctx=ctx)
    return net, "%s (pretrained, %s; %s)" % (name, path, taps["names"])


class StyleLoss(HybridBlock):
    """``(images (N, 3, H, W), content target, *gram targets) ->
    (total, content, style, tv)``, each ``(1,)`` and averaged over the batch.

    The content target is the content tap's features of the content images
    (``(N, C, h, w)``), each gram target ``(1, C, C)`` (one style image for
    the batch).  ``total = content_weight * content + style_weight * style +
    tv_weight * tv``; see the module docstring for the normalisations."""

    EPS = 1e-8

    def __init__(self, feature_net, content_weight=1.0, style_weight=10.0, tv_weight=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.weights = (content_weight, style_weight, tv_weight)
        with self.name_scope():
            self.net = feature_net

    def hybrid_forward(self, F, images, content_target, *grams):
        feats = self.net(images)
        style_feats, content = feats[:-1], feats[-1]
        # per image, so that the batch mean splits over devices exactly
        content_loss = F.mean(F.mean(F.square(content - content_target), axis=(1, 2, 3)) / (
            F.mean(F.square(content_target), axis=(1, 2, 3)) + self.EPS))
        style_loss = None
        for feat, target in zip(style_feats, grams):
            term = F.mean(F.square(F.broadcast_sub(gram_matrix(F, feat), target))) / (
                F.mean(F.square(target)) + self.EPS)
            style_loss = term if style_loss is None else style_loss + term
        dx = F.slice_axis(images, axis=3, begin=1, end=None) - \
            F.slice_axis(images, axis=3, begin=0, end=-1)
        dy = F.slice_axis(images, axis=2, begin=1, end=None) - \
            F.slice_axis(images, axis=2, begin=0, end=-1)
        tv = F.mean(F.square(dx)) + F.mean(F.square(dy))
        cw, sw, tw = self.weights
        total = cw * content_loss + sw * style_loss + tw * tv
        return total, content_loss, style_loss, tv


def content_features(feature_net, content):
    """The content target: content-tap features of images ``(N, 3, H, W)``
    in [0, 1], outside autograd."""
    with mx.autograd.pause():
        return feature_net(content)[-1]


def style_grams(feature_net, style):
    """The gram targets of one style image ``(1, 3, H, W)`` in [0, 1]."""
    with mx.autograd.pause():
        return [gram_matrix(mx.nd, f) for f in feature_net(style)[:-1]]


def style_targets(feature_net, content, style):
    """``(content target, [gram targets])`` of content images and one style
    image (see :func:`content_features`, :func:`style_grams`)."""
    return content_features(feature_net, content), style_grams(feature_net, style)


# ---- the feed-forward network (Johnson et al. 2016, with Ulyanov's instance norm) ----

class _Conv(HybridBlock):
    """Reflection padding (no border artefacts) then a convolution."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.pad = kernel // 2
        with self.name_scope():
            self.conv = nn.Conv2D(out_ch, kernel, stride, 0, in_channels=in_ch,
                                  use_bias=use_bias)

    def hybrid_forward(self, F, x):
        if self.pad:
            x = F.pad(x, mode="reflect", pad_width=(0, 0, 0, 0) + (self.pad,) * 4)
        return self.conv(x)


class InstanceNorm(HybridBlock):
    """Instance normalisation, ``gamma * (x - mean) / sqrt(var + eps) + beta``
    per image and channel; the same parameters as ``nn.InstanceNorm``.

    MXNet's InstanceNorm operator is a plain loop on the CPU (0.21 s for a
    32 x 512 x 512 map on a 2-core EPYC); here the two moments are
    matrix-vector products with a ones vector, which oneDNN runs
    multi-threaded (0.11 s there, 4x faster at 128 channels)."""

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


class _ToRGB(HybridBlock):
    """The last 9x9 convolution to 3 channels.  oneDNN runs a 3-filter
    convolution at a fraction of its speed (0.50 s vs 0.22 s for 16 filters
    at 512 x 512 on a 2-core EPYC), so the graph pads the weights with zero
    filters to 16 and keeps the first 3 outputs: the same result and
    gradients, 2.3x faster."""

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
        out = F.Convolution(x, weight, bias, kernel=(9, 9), num_filter=self.FILTERS)
        return F.slice_axis(out, axis=1, begin=0, end=3)


class _ConvNormReLU(HybridBlock):
    def __init__(self, in_ch, out_ch, kernel, stride=1, upsample=False, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.upsample, self.relu = upsample, relu
        with self.name_scope():
            # no bias: the instance norm right after removes any constant
            self.conv = _Conv(in_ch, out_ch, kernel, stride, use_bias=False)
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

    def __init__(self, width=32, residual=5, **kwargs):
        super().__init__(**kwargs)
        self.config = {"width": width, "residual": residual}
        w = width
        with self.name_scope():
            self.body = nn.HybridSequential()
            self.body.add(_ConvNormReLU(3, w, 9), _ConvNormReLU(w, 2 * w, 3, 2),
                          _ConvNormReLU(2 * w, 4 * w, 3, 2))
            for _ in range(residual):
                self.body.add(_Residual(4 * w))
            self.body.add(_ConvNormReLU(4 * w, 2 * w, 3, upsample=True),
                          _ConvNormReLU(2 * w, w, 3, upsample=True), _ToRGB(w))

    def hybrid_forward(self, F, x):
        return self.body(x)

    def flops_per_pixel(self):
        """Convolution FLOPs of one forward pass per output pixel."""
        w, r = self.config["width"], self.config["residual"]
        full = 2 * 81 * 3 * w + 2 * 81 * w * 3                     # the two 9x9 layers
        half = 2 * 9 * w * 2 * w / 4 + 2 * 9 * 2 * w * w            # down 1 / up 2 (at 1/2, 1)
        quarter = 2 * 9 * 2 * w * 4 * w / 16 + r * 2 * (2 * 9 * (4 * w) ** 2) / 16
        up1 = 2 * 9 * 4 * w * 2 * w / 4                             # up 1 at 1/2
        return full + half + quarter + up1


FAMILY = "style_net"


def load_style_net(path, ctx=None, prefer="best"):
    """A trained :class:`TransformerNet` from a checkpoint (run directory or
    checkpoint directory): returns ``(net, meta, ckpt_dir)``, hybridized;
    ``meta`` is the checkpoint's ``config.json`` (the style image, the
    feature network and the loss weights it was trained with)."""
    from ..utils import checkpoint as ckpt
    ckpt_dir, meta = ckpt.open_checkpoint(path, FAMILY, prefer=prefer,
                                          required=("transformer.params",))
    try:
        net = TransformerNet(**meta["model"])
    except (TypeError, KeyError) as err:
        raise MXGenError("checkpoint %s has a malformed model config: %s" % (ckpt_dir, err)) \
            from None
    ckpt.load_parameters(net, os.path.join(ckpt_dir, "transformer.params"), ctx or mx.cpu(),
                         "this style network")
    net.hybridize(static_alloc=True)
    return net, meta, ckpt_dir
