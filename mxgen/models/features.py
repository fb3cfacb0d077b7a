"""Feature networks of style transfer: images ``(N, 3, H, W)`` RGB in [0, 1]
-> the feature maps of the style taps, then the content tap.

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

(The Frechet distance's feature network is another thing:
:mod:`mxgen.utils.frechet`.)
"""
import glob
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError, one_line
from ..nn import precision

__all__ = ["FEATURE_NETS", "FeatureNet", "get_feature_net", "RANDOM_NET",
           "vgg_weights_in_cache"]

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
        conv = precision.Conv2D(width, 3, 1, 1, in_channels=in_ch)
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
