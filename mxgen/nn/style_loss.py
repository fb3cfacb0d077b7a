"""The losses of neural style transfer, each normalised by its target's
energy so that the same weights suit feature networks whose activations
differ by orders of magnitude:

* content: ``mean((F - P)^2) / mean(P^2)`` at the content tap, per image;
* style: sum over style taps of ``mean((G - A)^2) / mean(A^2)``, with Gram
  matrices ``G = F F^T / (C H W)`` (``F`` the ``(C, H*W)`` feature map);
* total variation: mean squared difference of neighbouring pixels.

A feature network here is any block mapping images ``(N, 3, H, W)`` in
[0, 1] to ``(style taps..., content tap)`` (:mod:`mxgen.models.features`).
"""
from dataclasses import dataclass

import mxnet as mx
from mxnet.gluon import HybridBlock

from ..fields import field

__all__ = ["StyleWeights", "gram_matrix", "StyleLoss", "content_features", "style_grams",
           "style_targets"]


@dataclass
class StyleWeights:
    """The weights of the three losses (``stylize`` and ``train-style``)."""
    content_weight: float = field(1.0, "weight of the content loss", group="loss")
    style_weight: float = field(10.0, "weight of the style loss", group="loss")
    tv_weight: float = field(1.0, "weight of the total-variation loss", group="loss")


def gram_matrix(F, feat):
    """``(N, C, H, W)`` -> ``(N, C, C)``: ``F F^T / (C H W)``."""
    flat = F.reshape(feat, (0, 0, -1))                                  # (N, C, HW)
    gram = F.batch_dot(flat, flat, transpose_b=True)                    # (N, C, C)
    # C * H * W without reading shapes (the graph serves every image size)
    size = F.sum(F.ones_like(flat), axis=(1, 2))                        # (N,)
    return F.broadcast_div(gram, F.reshape(size, (-1, 1, 1)))


class StyleLoss(HybridBlock):
    """``(images (N, 3, H, W), content target, *gram targets) ->
    (total, content, style, tv)``, each ``(1,)`` and averaged over the batch.

    The content target is the content tap's features of the content images
    (``(N, C, h, w)``), each gram target ``(1, C, C)`` (one style image for
    the batch).  ``total = content_weight * content + style_weight * style +
    tv_weight * tv``; see the module docstring for the normalisations."""

    EPS = 1e-8

    def __init__(self, feature_net, content_weight=StyleWeights.content_weight,
                 style_weight=StyleWeights.style_weight, tv_weight=StyleWeights.tv_weight,
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
