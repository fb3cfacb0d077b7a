"""Training a feed-forward style network (Johnson et al. 2016).

``mxgen train-style --content-dir DIR --style IMG``: a
:class:`~mxgen.models.style.TransformerNet` learns to turn any content
image into one stylised like ``IMG``, by the losses of the optimisation
method (:class:`~mxgen.models.style.StyleLoss`) through a fixed feature
network.  Per batch::

    content targets (feature net, no gradient) -> record: transform,
    StyleLoss per device -> backward -> trainer.step(global batch)

Each device's loss is its batch mean times its image count, so the update
(divided by the global batch) is the mean over the whole batch on any
number of devices or workers.  Exact resume as for the other families:
parameters, trainer state, the data position (a seeded permutation per
epoch) and the schedule come back from the checkpoint.
"""
import os
import time
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..config import AT_LEAST_0, AT_LEAST_1, check_ranges, field
from ..data.images import SHAPES, ImageFolder, read_image, save_side_by_side
from ..errors import MXGenError
from ..models.style import (FAMILY, FEATURE_NETS, RANDOM_NET, StyleLoss, TransformerNet,
                            content_features, get_feature_net, style_grams)
from ..utils.metrics import plot_curves
from .common import EpochSampler, Run, RunConfig

__all__ = ["StyleTrainConfig", "StyleStep", "build_style_step", "train_style"]


@dataclass
class StyleTrainConfig(RunConfig):
    """Everything ``mxgen train-style`` can set (saved in each checkpoint)."""
    content_dir: str = field(SHAPES, "folder of content images (recursive), or 'shapes'"
                                     " (embedded drawings, no download: a smoke test only)")
    style: Optional[str] = field(None, "the style image (required)")
    out: str = field("runs/style", "run directory", group="run")
    epochs: int = field(2, "epochs over the content images", group="run")
    batch_size: int = field(4, "global batch size (split over --ctx devices)", group="run")
    log_interval: int = field(10, "steps between log lines", group="run")
    image_size: int = field(256, "training crops (a multiple of 4)", group="model")
    width: int = field(32, "channels of the network's first layer", group="model")
    residual: int = field(5, "residual blocks", group="model")
    feature_net: str = field(RANDOM_NET, "feature network of the losses (vgg16/vgg19 need"
                                         " pretrained weights)", choices=FEATURE_NETS)
    vgg_params: Optional[str] = field(None, "VGG weights file (default: gluoncv's in the MXNet"
                                            " model cache)")
    content_weight: float = field(1.0, "weight of the content loss")
    style_weight: float = field(10.0, "weight of the style loss")
    tv_weight: float = field(1.0, "weight of the total-variation loss")
    lr: float = field(1e-3, "Adam learning rate")
    num_workers: int = field(2, "image-decoding processes")
    max_images: Optional[int] = field(None, "use only the first N content images")

    RUN_LENGTH = RunConfig.RUN_LENGTH + ("num_workers", "vgg_params")
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
            tv_weight=AT_LEAST_0, num_workers=AT_LEAST_0))
        if not self.style:
            raise MXGenError("--style IMG is required: the image whose style the network"
                             " learns")
        return self


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

    def __call__(self, images):
        parts = gluon.utils.split_and_load(images, self.ctxs)
        targets = [content_features(self.loss_block.net, x) for x in parts]
        with autograd.record():
            results = [self.loss_block(self.net(x), t, *g)
                       for x, t, g in zip(parts, targets, self.grams)]
            # batch means -> sums over each device's images
            totals = [r[0] * x.shape[0] for r, x in zip(results, parts)]
        autograd.backward(totals)
        self.trainer.step(self.global_batch)
        return mx.nd.add_n(*[(mx.nd.concat(*r, dim=0) * x.shape[0]).as_in_context(self.ctxs[0])
                             for r, x in zip(results, parts)])


def build_style_step(cfg, ctxs, cluster, style_image, hybridize=True):
    """Network, losses and trainer as ``train_style`` builds them: returns
    ``(net, step, feature description)``.  ``style_image``: ``(1, 3, H, W)``
    in [0, 1]."""
    feature_net, description = get_feature_net(cfg.feature_net, cfg.vgg_params, ctx=ctxs[0])
    for p in feature_net.collect_params().values():
        p.reset_ctx(ctxs)
    net = TransformerNet(cfg.width, cfg.residual, prefix="transformer_")
    net.initialize(mx.init.Xavier(magnitude=2), ctx=ctxs)
    loss_block = StyleLoss(feature_net, cfg.content_weight, cfg.style_weight, cfg.tv_weight)
    if hybridize:
        net.hybridize(static_alloc=True)
        loss_block.hybridize(static_alloc=True)
    grams = [style_grams(feature_net, mx.nd.array(style_image, ctx=c)) for c in ctxs]
    trainer = cluster.trainer(net.collect_params(), "adam", {"learning_rate": cfg.lr},
                              batch_size=cfg.batch_size)
    return net, StyleStep(net, loss_block, trainer, ctxs, grams, cfg.batch_size), description


def train_style(cfg, log=print, explicit=()):
    """Train (or resume) a feed-forward style network; returns a summary dict."""
    with Run(cfg, FAMILY, explicit, log, required=("transformer.params",)) as run:
        return _train_style(run)


def _train_style(run):
    cfg, ctxs, progress = run.cfg, run.ctxs, run.progress
    images = ImageFolder(cfg.content_dir, cfg.image_size, 3, num_workers=cfg.num_workers,
                         limit=cfg.max_images, seed=cfg.seed)
    if len(images) < cfg.batch_size:
        raise MXGenError("%s has %d usable images, fewer than one batch (%d); lower"
                         " --batch-size" % (cfg.content_dir, len(images), cfg.batch_size))
    style, _ = read_image(cfg.style, shorter=cfg.image_size, what="style image")
    batches_per_epoch = len(images) // cfg.batch_size
    mx.random.seed(cfg.seed)
    net, step_fn, feature = build_style_step(cfg, ctxs, run.cluster, style)
    lo, hi = run.cluster.shard(cfg.batch_size)
    sample = images.images[:1].astype(np.float32) / 255.0      # the progress image
    if run.cluster.is_writer:
        os.makedirs(os.path.join(cfg.out, "samples"), exist_ok=True)
    run.track(nets={"transformer": net}, trainers={"trainer": step_fn.trainer},
              meta=lambda: {"model": net.config, "feature_net": feature,
                            "style": os.path.abspath(cfg.style),
                            "weights": {"content": cfg.content_weight, "style": cfg.style_weight,
                                        "tv": cfg.tv_weight}})
    run.restore()
    run.log("content %s: %d images %dx%d, %d batches of %d per epoch; style %s (%dx%d);"
            " feature network %s" % (cfg.content_dir, len(images), cfg.image_size,
                                     cfg.image_size, batches_per_epoch, cfg.batch_size,
                                     cfg.style, style.shape[3], style.shape[2], feature))
    flops = net.flops_per_pixel() * cfg.image_size ** 2 * 3      # forward + backward
    side = None
    for epoch in run.epochs():
        sampler = EpochSampler(len(images), cfg.batch_size, cfg.seed, epoch, progress["batch"])
        batches = iter(gluon.data.DataLoader(gluon.data.ArrayDataset(images.images),
                                             batch_size=cfg.batch_size, sampler=sampler,
                                             last_batch="discard"))
        sums, count, t_log = 0, 0, time.time()
        for _ in run.batches(batches_per_epoch):
            batch = next(batches)[lo:hi].astype("float32") / 255.0
            sums = sums + step_fn(batch)
            count += hi - lo
            if run.log_due():
                values = sums.asnumpy() / count            # the only sync, per log line
                if not np.isfinite(values).all():
                    raise MXGenError("training stopped: non-finite style loss at step %d (%s);"
                                     " try a lower --lr. Last good checkpoint: %s"
                                     % (run.step, values[0], run.last_ckpt or "none"))
                speed = count * run.cluster.num_workers / (time.time() - t_log)
                t_log = time.time()
                run.bar.set_postfix(loss="%.4f" % values[0], img_s="%.2f" % speed)
                run.metrics.write(kind="train", step=run.step, epoch=epoch + 1,
                                  loss=float(values[0]), content=float(values[1]),
                                  style=float(values[2]), tv=float(values[3]),
                                  images_per_s=speed, gflop_per_s=speed * flops / 1e9)
                sums, count = 0, 0
        if run.cluster.is_writer:
            with autograd.predict_mode():
                result = net(mx.nd.array(sample, ctx=ctxs[0])).asnumpy()
            side = save_side_by_side([sample, style, result], os.path.join(
                cfg.out, "samples", "epoch_%03d_step_%07d.png" % (run.epoch, run.step)))
            run.log("epoch %d step %d: sample %s" % (run.epoch, run.step, side))
            if run.tensorboard is not None:
                run.tensorboard.image("samples", side, run.step)
        run.save()
        if run.cluster.is_writer:
            plot_curves(run.metrics.read(), os.path.join(cfg.out, "loss.png"),
                        {"loss": "train"}, title="style network on %s"
                        % os.path.basename(cfg.style))
    return run.finish(sample=side, feature_net=feature, transformer=net)
