"""Training a feed-forward style network (Johnson et al. 2016).

``mxgen train-style --content-dir DIR --style IMG``: a
:class:`~mxgen.models.style.TransformerNet` learns to turn any content
image into one stylised like ``IMG``, by the losses of the optimisation
method (:class:`~mxgen.nn.style_loss.StyleLoss`) through a fixed feature
network.  Per batch::

    content targets (feature net, no gradient) -> record: transform,
    StyleLoss per device -> backward -> trainer.step(global batch)

Each device's loss is its batch mean times its image count, so the update
(divided by the global batch) is the mean over the whole batch on any
number of devices or workers.  Exact resume as for the other families:
parameters, trainer state, the data position (a seeded permutation per
epoch) and the schedule come back from the checkpoint.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data.images import SHAPES, read_image, save_side_by_side
from ..errors import MXGenError
from ..fields import AT_LEAST_0, AT_LEAST_1, check_ranges, field
from ..models.features import FEATURE_NETS, RANDOM_NET, get_feature_net
from ..models.style import FAMILY, StyleNetConfig
from ..nn.style_loss import StyleLoss, StyleWeights, content_features, style_grams
from ..nn.precision import PRECISIONS, LossScaler, explain_precision, set_compute_dtype
from .common import (Run, RunConfig, Task, image_batches, image_folder, scaled_backward,
                     scaled_step)

__all__ = ["StyleTrainConfig", "StyleStep", "StyleTask", "build_style_step", "style_dtype",
           "train_style"]


@dataclass
class StyleTrainConfig(RunConfig, StyleWeights):
    """Everything ``mxgen train-style`` can set (saved in each checkpoint)."""
    content_dir: str = field(SHAPES, "folder of content images (recursive), or 'shapes'"
                                     " (embedded drawings, no download: a smoke test only)")
    style: Optional[str] = field(None, "the style image (required)")
    out: str = field("runs/style", "run directory", group="run")
    epochs: int = field(2, "epochs over the content images", group="run")
    batch_size: int = field(4, "global batch size (split over --ctx devices)", group="run")
    log_interval: int = field(10, "steps between log lines", group="run")
    image_size: int = field(256, "training crops (a multiple of 4)", group="model")
    width: int = field(StyleNetConfig.width, "channels of the network's first layer",
                       group="model")
    residual: int = field(StyleNetConfig.residual, "residual blocks", group="model")
    feature_net: str = field(RANDOM_NET, "feature network of the losses (vgg16/vgg19 need"
                                         " pretrained weights)", choices=FEATURE_NETS)
    vgg_params: Optional[str] = field(None, "VGG weights file (default: gluoncv's in the MXNet"
                                            " model cache)")
    lr: float = field(1e-3, "Adam learning rate")
    decode_workers: int = field(2, "image-decoding processes (0: decode in this one)")
    max_images: Optional[int] = field(None, "use only the first N content images")
    dtype: str = field("auto", "what the convolutions (network and feature network) compute"
                               " in: bfloat16 (CPUs, oneDNN), float16 (GPUs, with loss"
                               " scaling), float32, or auto: the faster of the low precision"
                               " and float32 as measured here; weights, optimizer, instance"
                               " norm and losses stay float32", choices=PRECISIONS)

    CHANGEABLE_ON_RESUME = RunConfig.CHANGEABLE_ON_RESUME + ("decode_workers", "vgg_params",
                                                            "dtype")
    RESUME_OVERRIDABLE = ("content_dir", "style", "vgg_params")

    def dry_run_limits(self):
        super().dry_run_limits()
        self.max_images = min(self.max_images or 8, 8)
        self.image_size = min(self.image_size, 64)

    def validate(self):
        super().validate()
        check_ranges(self, dict(
            {k: AT_LEAST_1 for k in ("width", "residual", "max_images")},
            image_size=(lambda v: v >= 16 and v % 4 == 0, ">= 16 and a multiple of 4"),
            lr=AT_LEAST_0, content_weight=AT_LEAST_0, style_weight=AT_LEAST_0,
            tv_weight=AT_LEAST_0, decode_workers=AT_LEAST_0))
        if not self.style:
            raise MXGenError("--style IMG is required: the image whose style the network"
                             " learns")
        return self

    def model_config(self):
        return StyleNetConfig(self.width, self.residual).validate()


class StyleStep:
    """One update of :func:`train_style`, for benchmarks and loops alike.

    ``step(images)``: this process's share ``(N, 3, S, S)`` in [0, 1] (NumPy
    or NDArray) of a global batch of ``global_batch`` images; returns a
    ``(4,)`` NDArray (not read): total, content, style and tv losses summed
    over this share's images."""

    def __init__(self, net, loss_block, trainer, ctxs, grams, global_batch):
        self.net, self.loss_block, self.trainer, self.ctxs = net, loss_block, trainer, ctxs
        self.grams = grams                    # per device: the style image's Gram matrices
        self.global_batch = global_batch
        self.params = list(net.collect_params().values())
        self.scaler = None        # a LossScaler when the networks compute in float16

    def __call__(self, images):
        parts = gluon.utils.split_and_load(images, self.ctxs)
        targets = [content_features(self.loss_block.net, x) for x in parts]
        with autograd.record():
            results = [self.loss_block(self.net(x), t, *g)
                       for x, t, g in zip(parts, targets, self.grams)]
            # batch means -> sums over each device's images
            totals = [r[0] * x.shape[0] for r, x in zip(results, parts)]
        scale = scaled_backward(totals, self.scaler)
        scaled_step(self.trainer, self.params, self.ctxs[0], self.global_batch, self.scaler,
                    scale)
        return mx.nd.add_n(*[(mx.nd.concat(*r, dim=0) * x.shape[0]).as_in_context(self.ctxs[0])
                             for r, x in zip(results, parts)])


def build_style_step(cfg, ctxs, cluster, style_image, hybridize=True, dtype="float32"):
    """Network, losses and trainer as ``train_style`` builds them: returns
    ``(net, step, feature description)``.  ``style_image``: ``(1, 3, H, W)``
    in [0, 1]; ``dtype`` what both networks' convolutions compute in."""
    feature_net, description = get_feature_net(cfg.feature_net, cfg.vgg_params, ctx=ctxs[0])
    for p in feature_net.collect_params().values():
        p.reset_ctx(ctxs)
    net = FAMILY.build(cfg.model_config())
    net.initialize(mx.init.Xavier(magnitude=2), ctx=ctxs)
    loss_block = StyleLoss(feature_net, cfg.content_weight, cfg.style_weight, cfg.tv_weight)
    if hybridize:
        net.hybridize(static_alloc=True)
        loss_block.hybridize(static_alloc=True)
    for block in (net, loss_block):
        set_compute_dtype(block, dtype)
    grams = [style_grams(feature_net, mx.nd.array(style_image, ctx=c)) for c in ctxs]
    trainer = cluster.trainer(net.collect_params(), "adam", {"learning_rate": cfg.lr},
                              batch_size=cfg.batch_size)
    step = StyleStep(net, loss_block, trainer, ctxs, grams, cfg.batch_size)
    step.scaler = LossScaler() if dtype == "float16" else None
    return net, step, description


def style_dtype(cfg, ctxs, batch):
    """``(dtype, reason)`` for training the style network of ``cfg`` on
    ``ctxs``, ``batch`` images per device: ``auto`` times a step in both."""
    # timed through the random feature network: VGG's layers are convolutions of the same kind
    shape = {"width": cfg.width, "size": min(cfg.image_size, 256), "batch": batch}
    return explain_precision(cfg.dtype, ctxs, "the style-network step",
                             "mxgen._timing:style_dtype", shape)


class StyleTask(Task):
    """The shared loop's hooks for the style network: the step is
    :class:`StyleStep`; after every epoch a side-by-side sample (content |
    style | result)."""
    metrics = ("loss", "content", "style", "tv")
    unit = "images"

    def __init__(self, run):
        super().__init__(run)
        cfg, ctxs = run.cfg, run.ctxs
        self.images = image_folder(cfg, cfg.content_dir, cfg.image_size, 3)
        self.style, _ = read_image(cfg.style, shorter=cfg.image_size, what="style image")
        self.num_batches = len(self.images) // cfg.batch_size
        run.keep_kernels(("dtype",), {"dtype": "float32"})
        self.dtype, dtype_reason = style_dtype(
            cfg, ctxs, max(1, cfg.batch_size // run.cluster.num_workers // len(ctxs)))
        mx.random.seed(cfg.seed)
        self.net, self.step_fn, self.feature = build_style_step(cfg, ctxs, run.cluster,
                                                                self.style, dtype=self.dtype)
        self.lo, self.hi = run.cluster.shard(cfg.batch_size)
        self.sample = self.images.images[:1].astype(np.float32) / 255.0   # the progress image
        run.track(nets={"transformer": self.net}, trainers={"trainer": self.step_fn.trainer},
                  meta=lambda: {"model": dataclasses.asdict(self.net.config),
                                "feature_net": self.feature,
                                "style": os.path.abspath(cfg.style),
                                "weights": {"content": cfg.content_weight,
                                            "style": cfg.style_weight, "tv": cfg.tv_weight},
                                "kernels": {"dtype": self.dtype}})
        if run.restore():
            self.restore_scaler(self.step_fn.scaler)
        run.log("precision: %s (%s)" % (self.dtype, dtype_reason))
        if run.cluster.is_writer:
            os.makedirs(os.path.join(cfg.out, "samples"), exist_ok=True)
        run.log("content %s: %d images %dx%d, %d batches of %d per epoch; style %s (%dx%d);"
                " feature network %s" % (cfg.content_dir, len(self.images), cfg.image_size,
                                         cfg.image_size, self.num_batches, cfg.batch_size,
                                         cfg.style, self.style.shape[3], self.style.shape[2],
                                         self.feature))
        self.flops = self.net.flops_per_pixel() * cfg.image_size ** 2 * 3   # forward + backward
        self.side = None
        self.plot = dict(series={"loss": "train"},
                         title="style network on %s" % os.path.basename(cfg.style))

    def begin_epoch(self, epoch):
        cfg = self.run.cfg
        self.batches = image_batches(self.images, cfg.batch_size, cfg.seed, epoch,
                                     self.run.progress["batch"])

    def step(self):
        batch = next(self.batches)[self.lo:self.hi].astype("float32") / 255.0
        sums = self.step_fn(batch)
        self.record_scaler(self.step_fn.scaler)
        return sums, self.hi - self.lo, None

    def train_record(self, means, speed, extra):
        fields, _ = super().train_record(means, speed, extra)
        fields["gflop_per_s"] = speed * self.flops / 1e9
        return fields, {"loss": "%.4f" % means[0], "img_s": "%.2f" % speed}

    def evaluate(self, epoch_done):
        run = self.run
        if run.cluster.is_writer:
            with autograd.predict_mode():
                result = self.net(mx.nd.array(self.sample, ctx=run.ctxs[0])).asnumpy()
            self.side = save_side_by_side([self.sample, self.style, result], os.path.join(
                run.cfg.out, "samples", "epoch_%03d_step_%07d.png" % (run.epoch, run.step)))
            run.log("epoch %d step %d: sample %s" % (run.epoch, run.step, self.side))
            if run.tensorboard is not None:
                run.tensorboard.image("samples", self.side, run.step)
        return None, False

    def summary(self):
        return dict(sample=self.side, feature_net=self.feature, transformer=self.net)


def train_style(cfg: StyleTrainConfig, log: Optional[Callable[[str], None]] = None,
                explicit: Iterable[str] = ()) -> Dict[str, Any]:
    """Train (or resume) a feed-forward style network; returns a summary dict."""
    with Run(cfg, FAMILY, explicit, log) as run:
        return run.train(StyleTask(run))
