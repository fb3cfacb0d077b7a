"""Stylising images: Gatys et al.'s optimisation, or one pass of a trained
feed-forward network (see :mod:`mxgen.models.style`); the losses are
:mod:`mxgen.nn.style_loss`'s.

Images are float32 ``(1, 3, H, W)`` RGB in [0, 1] here.  The style image is
resized so that its shorter side equals the output's shorter side (its Gram
statistics then describe strokes at the output's scale); one much smaller
than that (under half) is upscaled with a warning, since the upscaled
strokes look blurred, not refused.
"""
import warnings
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd

from .data.images import read_image
from .errors import MXGenError
from .fields import field
from .models.features import FEATURE_NETS, RANDOM_NET
from .nn.style_loss import StyleLoss, StyleWeights, style_targets

__all__ = ["StylizeConfig", "stylize_optim", "stylize_net", "PixelAdam",
           "load_content_and_style", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "lbfgs")


@dataclass
class StylizeConfig(StyleWeights):
    """How an image is stylised (the defaults of :func:`stylize_optim` and
    of ``mxgen stylize``'s flags)."""
    method: str = field("optim", "optim: optimise the pixels (no training); net: one pass of"
                                 " a network trained by train-style (--model)",
                        group="stylize", choices=("optim", "net"))
    size: int = field(512, "longer side of the output", group="stylize")
    iterations: int = field(300, "optimiser iterations (per scale with multi-scale)",
                            group="stylize")
    lr: float = field(0.02, "Adam step on [0, 1] pixels", group="stylize")
    optimizer: str = field("adam", "adam on the device, or SciPy's L-BFGS-B", group="stylize",
                           choices=OPTIMIZERS)
    init: str = field("content", "start from the content image or from noise",
                      group="stylize", choices=("content", "noise"))
    multiscale: bool = field(True, "coarse to fine for large images", group="stylize")
    feature_net: str = field(RANDOM_NET, "feature network of the losses (vgg16/vgg19 need"
                                         " pretrained weights)", group="stylize",
                             choices=FEATURE_NETS)
    vgg_params: Optional[str] = field(None, "VGG weights file (default: gluoncv's in the"
                                            " MXNet model cache)", group="stylize")
    seed: int = field(0, "random seed", group="stylize")


def load_content_and_style(content_path, style_path, size):
    """Load the content image (longer side ``size``) and the style image
    (shorter side matched to the content's), warning when the style image is
    much smaller than that.  Returns ``(content, style)``."""
    content, _ = read_image(content_path, size=size, what="content image", multiple=4)
    shorter = min(content.shape[2:])
    style, original = read_image(style_path, shorter=shorter, what="style image")
    if min(original) * 2 < shorter:
        warnings.warn("style image %s is %dx%d, much smaller than the output (shorter side %d);"
                      " it is upscaled, so its strokes come out blurred: use a larger style"
                      " image or a smaller --size" % ((style_path,) + original + (shorter,)),
                      stacklevel=2)
    return content, style


def _resize(x, height, width):
    return mx.nd.contrib.BilinearResize2D(x, height=height, width=width)


def _scales(height, width, min_side=128):
    """Coarse-to-fine sizes: halve while the shorter side stays >= min_side."""
    sizes = [(height, width)]
    while min(sizes[-1]) // 2 >= min_side:
        h, w = sizes[-1]
        sizes.append((h // 2 // 4 * 4, w // 2 // 4 * 4))
    return sizes[::-1]


_D = StylizeConfig


def stylize_optim(content, style, feature_net, iterations=_D.iterations,
                  content_weight=_D.content_weight, style_weight=_D.style_weight,
                  tv_weight=_D.tv_weight, lr=_D.lr, optimizer=_D.optimizer, init=_D.init,
                  multiscale=_D.multiscale, seed=_D.seed, ctx=None, hybridize=True,
                  on_iteration=None):
    """Gatys et al.'s method: optimise the pixels of an image, starting from
    the content image (``init="content"``) or noise, to lower ``content_weight
    * content + style_weight * style + tv_weight * tv``.

    ``optimizer``: ``"adam"`` (on the device, no host sync per iteration) or
    ``"lbfgs"`` (SciPy's L-BFGS-B with the [0, 1] bounds; one sync per
    evaluation).  ``multiscale``: for large images, run coarse to fine
    (halving while the shorter side stays >= 128), each scale starting from
    the previous result upsampled, ``iterations`` per scale.
    ``on_iteration(scale_index, iteration, losses)`` is called with the
    losses (NDArrays) after every iteration.  Returns ``(image (1, 3, H, W)
    NumPy, history)``: ``history`` has the losses before and after each
    scale."""
    run = {"adam": _adam, "lbfgs": _lbfgs}.get(optimizer)
    if run is None:
        raise MXGenError("unknown optimizer %r for stylize (adam or lbfgs)" % optimizer)
    ctx = ctx or mx.cpu()
    content = mx.nd.array(content, ctx=ctx)
    style = mx.nd.array(style, ctx=ctx)
    loss_block = StyleLoss(feature_net, content_weight, style_weight, tv_weight)
    if hybridize:
        loss_block.hybridize(static_alloc=True)
    height, width = content.shape[2:]
    sizes = _scales(height, width) if multiscale else [(height, width)]
    rng = np.random.RandomState(seed)
    image, history = None, []
    for k, (h, w) in enumerate(sizes):
        target_content = _resize(content, h, w) if (h, w) != (height, width) else content
        scale = min(h, w) / min(height, width)
        style_k = _resize(style, max(4, int(style.shape[2] * scale)),
                          max(4, int(style.shape[3] * scale))) if scale != 1 else style
        content_target, grams = style_targets(feature_net, target_content, style_k)
        if image is None:
            image = target_content.copy() if init == "content" else mx.nd.array(
                rng.uniform(0, 1, size=(1, 3, h, w)).astype(np.float32), ctx=ctx)
        else:
            image = mx.nd.clip(_resize(image, h, w), 0, 1)

        def losses_of(x):
            return loss_block(x, content_target, *grams)

        before = [float(v.asscalar()) for v in losses_of(image)]
        image = run(image, losses_of, iterations, lr,
                    (lambda i, values, k=k: on_iteration(k, i, values)) if on_iteration else None)
        after = [float(v.asscalar()) for v in losses_of(image)]
        history.append({"size": [h, w], "before": dict(zip(LOSS_NAMES, before)),
                        "after": dict(zip(LOSS_NAMES, after))})
    return image.asnumpy(), history


LOSS_NAMES = ("total", "content", "style", "tv")


class PixelAdam:
    """Adam on the pixels of ``image`` against ``losses_of(image) -> (total,
    ...)``: ``step()`` is one iteration of :func:`stylize_optim` (no host
    sync) and returns the losses (NDArrays); ``image`` the current one."""

    def __init__(self, image, losses_of, lr):
        self.losses_of = losses_of
        self.pixels = mx.gluon.Parameter("pixels", shape=image.shape)
        self.pixels.initialize(init=mx.init.Constant(0), ctx=image.context)
        self.pixels.set_data(image)
        self.trainer = mx.gluon.Trainer([self.pixels], "adam", {"learning_rate": lr})

    @property
    def image(self):
        return self.pixels.data()

    def step(self):
        with autograd.record():
            values = self.losses_of(self.pixels.data())
        values[0].backward()
        self.trainer.step(1)
        self.pixels.set_data(mx.nd.clip(self.pixels.data(), 0, 1))     # stay a valid image
        return values


def _adam(image, losses_of, iterations, lr, on_iteration):
    optimizer = PixelAdam(image, losses_of, lr)
    for i in range(iterations):
        values = optimizer.step()
        if on_iteration:
            on_iteration(i, values)
    return optimizer.image


def _lbfgs(image, losses_of, iterations, lr, on_iteration):
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise MXGenError("--optimizer lbfgs needs SciPy (pip install scipy); or use adam") \
            from None
    shape, ctx = image.shape, image.context
    calls = [0]

    def fun(flat):
        x = mx.nd.array(flat.reshape(shape).astype(np.float32), ctx=ctx)
        x.attach_grad()
        with autograd.record():
            values = losses_of(x)
        values[0].backward()
        if on_iteration:
            on_iteration(calls[0], values)
        calls[0] += 1
        return float(values[0].asscalar()), x.grad.asnumpy().astype(np.float64).ravel()

    result = minimize(fun, image.asnumpy().astype(np.float64).ravel(), jac=True,
                      method="L-BFGS-B", bounds=[(0.0, 1.0)] * int(np.prod(shape)),
                      options={"maxiter": iterations, "maxfun": iterations * 2})
    return mx.nd.array(result.x.reshape(shape).astype(np.float32), ctx=ctx)


def stylize_net(net, content, ctx=None):
    """One forward pass of a trained :class:`TransformerNet`: ``(1, 3, H, W)``
    in [0, 1] (H, W multiples of 4) -> the stylised image, clipped to [0, 1]."""
    ctx = ctx or mx.cpu()
    with autograd.predict_mode():
        out = net(mx.nd.array(content, ctx=ctx))
    return np.clip(out.asnumpy(), 0, 1)

