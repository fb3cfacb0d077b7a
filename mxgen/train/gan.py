"""Training a DCGAN.

Per iteration, over the device list (``split_and_load`` on the batch axis)::

    (1) Update D: real batch labelled 1, generated batch (detached) labelled 0,
        sigmoid binary cross-entropy; trainer_d.step
    (2) Update G: D's verdict on the same generated batch, labelled 1;
        trainer_g.step (backward runs through the G graph recorded in (1),
        so G's forward is computed once per iteration)

Adam(lr 2e-4, beta1 0.5) for both.  Losses and D(x), D(G(z)) are accumulated on
the device and read only at log intervals: there is no per-iteration host sync.
Non-finite losses are therefore detected at the next log line (every
``log_interval`` iterations) or epoch end: training stops with an error naming
the range and the last good checkpoint, and no non-finite parameters are saved.

Exact resume: both networks, both trainers, the data order (a permutation per
epoch from ``seed + epoch``) and position, the fixed sample noise and the step
counter are checkpointed; MXNet's RNG is re-seeded from ``(seed, step)`` before
every iteration, so noise draws after a resume are the ones an uninterrupted
run makes.
"""
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..config import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges, field
from ..data.images import SHAPES, ImageFolder, save_grid, to_float
from ..errors import MXGenError
from ..models import get_model
from ..models.dcgan import FAMILY, DCGANConfig, dcgan_init, generate_images
from ..utils.frechet import frechet_distance, get_feature_net
from ..utils.metrics import plot_curves
from ..distributed import Cluster
from .common import EpochSampler, Run, RunConfig

__all__ = ["GANTrainConfig", "GANStep", "build_gan_step", "train_gan", "gan_flops_per_image"]


@dataclass
class GANTrainConfig(RunConfig):
    """Everything ``mxgen train-gan`` can set (saved in each checkpoint)."""
    data: str = field(SHAPES, "image folder (recursive), or 'shapes' (embedded, no download)")
    out: str = field("runs/gan", "run directory", group="run")
    batch_size: int = field(64, "global batch size (split over --ctx devices)", group="run")
    log_interval: int = field(10, "iterations between log lines", group="run")
    image_size: int = field(64, "image size: 64, or 32 (one stage fewer)", group="model",
                            choices=(32, 64))
    latent_size: int = field(100, "noise vector size", group="model")
    ngf: int = field(64, "generator width", group="model")
    ndf: int = field(64, "discriminator width", group="model")
    channels: int = field(3, "3 (colour) or 1 (grayscale)", group="model", choices=(1, 3))
    lr: float = field(2e-4, "Adam learning rate of both networks")
    beta1: float = field(0.5, "Adam beta1")
    num_workers: int = field(2, "image-decoding processes")
    fid_samples: int = field(500, "real and generated images for the Frechet distance")
    grid_size: int = field(64, "images in each epoch's sample grid")
    max_images: Optional[int] = field(None, "use only the first N images")
    sync_bn: bool = field(False, "synchronise BatchNorm statistics across the --ctx GPUs"
                                 " (MXNet's SyncBatchNorm; GPUs only; within each worker of"
                                 " a distributed run)", group="model")

    RUN_LENGTH = RunConfig.RUN_LENGTH + ("num_workers",)

    def dry_run_limits(self):
        super().dry_run_limits()
        self.max_images = min(self.max_images or 256, 256)
        self.fid_samples = min(self.fid_samples, 64)

    def validate(self):
        super().validate()
        check_ranges(self, dict(
            {k: AT_LEAST_1 for k in ("latent_size", "ngf", "ndf", "grid_size", "max_images")},
            lr=AT_LEAST_0, beta1=FRACTION, num_workers=AT_LEAST_0,
            fid_samples=(lambda v: v >= 2, ">= 2")))
        return self

    def model_config(self):
        return DCGANConfig(self.image_size, self.latent_size, self.ngf, self.ndf,
                           self.channels).validate()


def gan_flops_per_image(cfg, d_weight_grads_in_g_step=False):
    """Convolution FLOPs of one D+G iteration per image, counting the work
    done: every forward, every weight gradient, and the input gradients only
    where something needs them.

    G: forward, weight gradients, input gradients except its first layer's
    (z needs none).  D's update, on real and on detached fake images:
    forward, weight gradients, input gradients except the first layer's.
    G's update through D: forward and input gradients down to the image; D's
    weight gradients there are skipped by mxgen's loop (they are thrown
    away), and ``d_weight_grads_in_g_step=True`` counts the straightforward
    loop that computes them anyway.
    """
    widths_g = [cfg.ngf * 2 ** i for i in reversed(range(cfg.stages))]
    g_layers, in_ch, in_size = [], cfg.latent_size, 1
    for w in widths_g + [cfg.nc]:            # a transposed conv: 2*Cin*Cout*k^2 per input pixel
        g_layers.append(2 * in_ch * w * 16 * in_size * in_size)
        in_ch, in_size = w, (4 if in_size == 1 else in_size * 2)
    d_layers, in_ch, out_size = [], cfg.nc, cfg.image_size // 2
    for w in [cfg.ndf * 2 ** i for i in range(cfg.stages)]:
        d_layers.append(2 * in_ch * w * 16 * out_size * out_size)
        in_ch, out_size = w, out_size // 2
    d_layers.append(2 * in_ch * 16)           # final 4x4 conv to one logit
    g, d = sum(g_layers), sum(d_layers)
    g_total = 3 * g - g_layers[0]
    d_update = 2 * (d + d + (d - d_layers[0]))          # real and fake
    g_through_d = d + d + (d if d_weight_grads_in_g_step else 0)
    return g_total + d_update + g_through_d


class GANStep:
    """One D+G iteration of :func:`train_gan`, for benchmarks and loops alike.

    ``step(real)``: ``real`` this process's share ``(N, nc, S, S)`` in
    [-1, 1] (NumPy or NDArray) of a global batch, split over its devices.
    The noise of the whole global batch is drawn here from MXNet's CPU RNG
    and each device takes the rows of its images, so one process with two
    devices and two workers with one device each draw the same noise.
    Returns a ``(4,)`` NDArray on the first device, not read: the sums
    over the batch of loss_D, loss_G, D(x) and D(G(z)).

    ``skip_d_weight_grads`` (mxgen's loop) computes no D weight gradients in
    (2), where they would be thrown away; ``False`` is the straightforward
    loop, kept as a benchmark baseline.
    """

    def __init__(self, gen, disc, trainer_g, trainer_d, ctxs, latent_size,
                 skip_d_weight_grads=True, rank=0, num_workers=1):
        self.gen, self.disc, self.ctxs = gen, disc, ctxs
        self.rank, self.num_workers = rank, num_workers
        self.trainer_g, self.trainer_d = trainer_g, trainer_d
        self.latent_size, self.skip = latent_size, skip_d_weight_grads
        self.loss = gluon.loss.SigmoidBinaryCrossEntropyLoss()
        self.disc_params = list(disc.collect_params().values())

    def __call__(self, real):
        local = real.shape[0]
        batch = local * self.num_workers                      # the global batch
        reals = gluon.utils.split_and_load(real, self.ctxs)
        n = local // len(self.ctxs)
        noise = mx.nd.random.normal(shape=(batch, self.latent_size, 1, 1), ctx=mx.cpu())
        noises = gluon.utils.split_and_load(
            noise[self.rank * local:(self.rank + 1) * local], self.ctxs)
        ones = [mx.nd.ones((n,), ctx=c) for c in self.ctxs]
        zeros = [mx.nd.zeros((n,), ctx=c) for c in self.ctxs]
        # (1) Update D: maximise log D(x) + log(1 - D(G(z)))
        with autograd.record():
            fakes = [self.gen(z) for z in noises]
            out_real = [self.disc(x) for x in reals]
            out_fake = [self.disc(f.detach()) for f in fakes]
            errs_d = [self.loss(r, o) + self.loss(f, zz)
                      for r, f, o, zz in zip(out_real, out_fake, ones, zeros)]
        autograd.backward(errs_d)
        self.trainer_d.step(batch)
        # (2) Update G: maximise log D(G(z)), through the G graph recorded in (1).
        # D's weights get no gradient here, only its input: skipping them
        # saves a third of this backward pass.
        with _no_weight_grads(self.disc_params if self.skip else []):
            with autograd.record():
                errs_g = [self.loss(self.disc(f), o) for f, o in zip(fakes, ones)]
            autograd.backward(errs_g)
        self.trainer_g.step(batch)
        return mx.nd.add_n(*[mx.nd.stack(e_d.sum(), e_g.sum(), mx.nd.sigmoid(r).sum(),
                                          mx.nd.sigmoid(f).sum()).reshape((4,))
                             .as_in_context(self.ctxs[0])
                             for e_d, e_g, r, f in zip(errs_d, errs_g, out_real, out_fake)])


def build_gan_step(model_cfg, lr, beta1, ctxs, hybridize=True, skip_d_weight_grads=True,
                   cluster=None, batch_size=None, sync_bn=False):
    """Networks (DCGAN init), trainers and step as ``train_gan`` builds them:
    returns ``(generator, discriminator, step)``.  ``batch_size`` (the global
    batch) is needed under dist_async, whose servers divide by it."""
    cluster = cluster or Cluster(None, ctxs)
    sync = 0
    if sync_bn:
        if any(c.device_type != "gpu" for c in ctxs):
            raise MXGenError("--sync-bn synchronises BatchNorm across GPUs and needs GPU devices"
                             " (--ctx gpu:0,1,...); MXNet's SyncBatchNorm waits forever on"
                             " CPU devices (--ctx %s)" % ",".join(str(c) for c in ctxs))
        sync = len(ctxs)
    gen = get_model("dcgan_generator", image_size=model_cfg.image_size,
                    latent_size=model_cfg.latent_size, ngf=model_cfg.ngf, nc=model_cfg.nc,
                    sync_bn_devices=sync, prefix="generator_")
    disc = get_model("dcgan_discriminator", image_size=model_cfg.image_size, ndf=model_cfg.ndf,
                     nc=model_cfg.nc, sync_bn_devices=sync, prefix="discriminator_")
    for net in (gen, disc):
        dcgan_init(net, ctxs)
        if hybridize:
            net.hybridize(static_alloc=True)
    opt = {"learning_rate": lr, "beta1": beta1}
    trainer_g = cluster.trainer(gen.collect_params(), "adam", opt, batch_size=batch_size)
    trainer_d = cluster.trainer(disc.collect_params(), "adam", opt, batch_size=batch_size)
    return gen, disc, GANStep(gen, disc, trainer_g, trainer_d, ctxs, model_cfg.latent_size,
                              skip_d_weight_grads, cluster.rank, cluster.num_workers)


def train_gan(cfg, log=print, explicit=()):
    """Train (or resume) a DCGAN; returns a summary dict."""
    with Run(cfg, FAMILY, explicit, log,
             required=("generator.params", "discriminator.params", "fixed_noise.nd")) as run:
        return _train_gan(run)


def _train_gan(run):
    cfg, ctxs, progress = run.cfg, run.ctxs, run.progress
    model_cfg = cfg.model_config()
    if run.cluster.is_writer:
        os.makedirs(os.path.join(cfg.out, "samples"), exist_ok=True)

    # ---- data -------------------------------------------------------------
    images = ImageFolder(cfg.data, cfg.image_size, cfg.channels, num_workers=cfg.num_workers,
                         limit=cfg.max_images, seed=cfg.seed)
    if len(images) < cfg.batch_size:
        raise MXGenError("%s has %d usable images, fewer than one batch (%d); lower"
                         " --batch-size" % (cfg.data, len(images), cfg.batch_size))
    batches_per_epoch = len(images) // cfg.batch_size
    fid_idx = np.random.RandomState(cfg.seed + 7).choice(
        len(images), min(cfg.fid_samples, len(images)), replace=False)
    fid_real = to_float(images.images[np.sort(fid_idx)])

    # ---- networks, trainers, checkpoint contents -----------------------------
    mx.random.seed(cfg.seed)
    gen, disc, step_fn = build_gan_step(model_cfg, cfg.lr, cfg.beta1, ctxs, cluster=run.cluster,
                                       batch_size=cfg.batch_size, sync_bn=cfg.sync_bn)
    lo, hi = run.cluster.shard(cfg.batch_size)          # this rank's images of each batch
    writer = run.cluster.is_writer
    noise = {"noise": mx.nd.random.normal(shape=(max(cfg.grid_size, len(fid_real)),
                                                 cfg.latent_size, 1, 1), ctx=ctxs[0])}
    feature_net = get_feature_net(cfg.channels, ctx=ctxs[0])
    progress.setdefault("best_fd", None)
    run.track(nets={"generator": gen, "discriminator": disc},
              trainers={"trainer_g": step_fn.trainer_g, "trainer_d": step_fn.trainer_d},
              arrays=lambda: {"fixed_noise": noise},
              meta=lambda: {"model": model_cfg.to_dict(), "feature_net": feature_net.name})
    if run.restore():
        noise["noise"] = run.load_arrays("fixed_noise")["noise"].as_in_context(ctxs[0])
    real_features = feature_net.features(fid_real)
    flops = gan_flops_per_image(model_cfg)
    run.log("data %s: %d images %dx%d, %d batches of %d per epoch; Frechet distance features:"
            " %s" % (cfg.data, len(images), cfg.image_size, cfg.image_size, batches_per_epoch,
                     cfg.batch_size, feature_net.name))

    def frechet():
        fake = generate_images(gen, noise["noise"][:len(fid_real)])
        return frechet_distance(real_features, feature_net.features(fake)), fake

    if writer and not run.resume_from:      # the baseline later distances are compared with
        fd0 = frechet()[0]
        run.metrics.write(kind="eval", step=0, epoch=0, frechet_distance=fd0,
                          feature_net=feature_net.name)
        run.log("Frechet distance at initialisation: %.3f" % fd0)
    fd, grid_path = progress["best_fd"], None
    for epoch in run.epochs():
        sampler = EpochSampler(len(images), cfg.batch_size, cfg.seed, epoch, progress["batch"])
        batches = iter(gluon.data.DataLoader(gluon.data.ArrayDataset(images.images),
                                             batch_size=cfg.batch_size, sampler=sampler,
                                             last_batch="discard"))
        sums, count, t_log, first_step = 0, 0, time.time(), run.step + 1
        for _ in run.batches(batches_per_epoch):
            run.seed_step()
            sums = sums + step_fn(to_float(next(batches)[lo:hi]))     # (4,) sums, this rank's
            count += hi - lo
            if run.log_due():
                values = sums.asnumpy() / count            # the only sync, per log line
                if not np.isfinite(values).all():
                    raise MXGenError(
                        "training stopped: non-finite GAN loss in steps %d-%d (loss_D %s,"
                        " loss_G %s); try a lower --lr. Last good checkpoint: %s"
                        % (first_step, run.step, values[0], values[1], run.last_ckpt or "none"))
                speed = count * run.cluster.num_workers / (time.time() - t_log)    # global
                t_log = time.time()
                run.bar.set_postfix(loss_d="%.3f" % values[0], loss_g="%.3f" % values[1],
                                    img_s="%.0f" % speed)
                run.metrics.write(kind="train", step=run.step, epoch=epoch + 1,
                                  loss_d=float(values[0]), loss_g=float(values[1]),
                                  d_real=float(values[2]), d_fake=float(values[3]),
                                  images_per_s=speed, gflop_per_s=speed * flops / 1e9)
                sums, count, first_step = 0, 0, run.step + 1
        # ---- end of epoch (or run): sample grid, Frechet distance (rank 0), checkpoint
        improved = False
        if writer:
            fd, fake = frechet()
            grid_path = save_grid(fake[:cfg.grid_size], os.path.join(
                cfg.out, "samples", "epoch_%03d_step_%07d.png" % (run.epoch, run.step)))
            if run.tensorboard is not None:
                run.tensorboard.image("samples", grid_path, run.step)
            improved = math.isfinite(fd) and (progress["best_fd"] is None
                                              or fd < progress["best_fd"])
            progress["best_fd"] = fd if improved else progress["best_fd"]
            run.log("epoch %d step %d: Frechet distance %.3f (%s features, %d samples)%s; grid"
                    " %s" % (run.epoch, run.step, fd, feature_net.name, len(fid_real),
                             " *best*" if improved else "", grid_path))
            run.metrics.write(kind="eval", step=run.step, epoch=run.epoch, frechet_distance=fd,
                              feature_net=feature_net.name, grid=grid_path,
                              elapsed_s=run.elapsed())
        run.save(point_best=improved)
        if writer:
            plot_curves(run.metrics.read(), os.path.join(cfg.out, "loss.png"),
                        {"loss_d": "train", "loss_g": "train"}, title="DCGAN %dx%d on %s"
                        % (cfg.image_size, cfg.image_size,
                           os.path.basename(cfg.data.rstrip("/"))))
    return run.finish(frechet_distance=fd, best_fd=progress["best_fd"], grid=grid_path,
                      feature_net=feature_net.name, generator=gen, discriminator=disc)


class _no_weight_grads:
    """Temporarily set ``grad_req='null'`` on parameters that need a gradient."""

    def __init__(self, params):
        self.params = [p for p in params if p.grad_req != "null"]

    def __enter__(self):
        for p in self.params:
            p.grad_req = "null"

    def __exit__(self, *exc):
        for p in self.params:
            p.grad_req = "write"
        return False
