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
import os
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterable, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data.images import SHAPES, save_grid, to_float
from ..distributed import Cluster
from ..errors import MXGenError
from ..fields import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges, field
from ..models import get_model
from ..models.dcgan import FAMILY, DCGANConfig, InputTangent, dcgan_init, generate_images
from ..nn.ema import WeightEMA
from ..nn.gan_loss import LOSSES, d_loss, g_loss
from ..nn.precision import PRECISIONS, LossScaler, explain_precision, set_compute_dtype
from ..nn.spectral import power_iteration, spectral_layers
from ..utils.frechet import frechet_distance, frechet_features
from .common import (Run, RunConfig, Task, image_batches, image_folder, scaled_backward,
                     scaled_step)

__all__ = ["RECIPES", "GANTrainConfig", "GANStep", "GANTask", "build_gan_step", "gan_dtype",
           "train_gan", "gan_flops_per_image"]


# The named combinations of --recipe: every setting a recipe leaves unset
# (None) on the config takes these values.
RECIPES = {
    "dcgan": dict(loss="bce", spectral_norm=False, d_norm="batch", ema=0.0, r1=0.0,
                  lr_d=2e-4, lr_g=2e-4, beta1=0.5, beta2=0.999),
    # measured on noto-emoji 64x64 in 15 CPU-minutes (BENCHMARKS.md "GAN
    # recipes"): twice DCGAN's rate with a shorter second-moment window is
    # most of the gain; hinge + spectral norm make that rate steadier, and the
    # EMA smooths the curve (it adds little distance at that length)
    "stable": dict(loss="hinge", spectral_norm=True, d_norm="batch", ema=0.999, r1=0.0,
                   lr_d=4e-4, lr_g=4e-4, beta1=0.5, beta2=0.99),
}


@dataclass
class GANTrainConfig(RunConfig):
    """Everything ``mxgen train-gan`` can set (saved in each checkpoint)."""
    data: str = field(SHAPES, "image folder (recursive), or 'shapes' (embedded, no download)")
    out: str = field("runs/gan", "run directory", group="run")
    batch_size: int = field(64, "global batch size (split over --ctx devices)", group="run")
    log_interval: int = field(10, "iterations between log lines", group="run")
    image_size: int = field(DCGANConfig.image_size, "image size: 64, or 32 (one stage fewer)",
                            group="model", choices=(32, 64))
    latent_size: int = field(DCGANConfig.latent_size, "noise vector size", group="model")
    ngf: int = field(DCGANConfig.ngf, "generator width", group="model")
    ndf: int = field(DCGANConfig.ndf, "discriminator width", group="model")
    channels: int = field(DCGANConfig.nc, "3 (colour) or 1 (grayscale)", group="model",
                          choices=(1, 3))
    recipe: str = field("stable", "a tested combination of the settings below, each of which"
                                  " a flag overrides: stable (hinge loss, spectral norm in D,"
                                  " Adam 4e-4 with betas 0.5 / 0.99, an EMA 0.999 of G; a third"
                                  " of dcgan's Frechet distance in 15 CPU-minutes) or dcgan"
                                  " (the tutorial's: bce loss, Adam 2e-4, beta1 0.5)",
                      choices=tuple(RECIPES))
    loss: Optional[str] = field(None, "adversarial loss: bce, nonsat or hinge (default: the"
                                      " recipe's)", choices=LOSSES)
    spectral_norm: Optional[bool] = field(None, "spectral normalisation of every D"
                                                " convolution (default: the recipe's)",
                                          group="model")
    d_norm: Optional[str] = field(None, "D's normalisation between convolutions: batch"
                                        " (BatchNorm, as DCGAN) or none (as SNGAN; what --r1"
                                        " needs) (default: the recipe's)", group="model",
                                  choices=("batch", "none"))
    ema: Optional[float] = field(None, "decay of an exponential moving average of G's weights"
                                       " used for samples, the Frechet distance and exports"
                                       " (0: none; default: the recipe's)")
    r1: Optional[float] = field(None, "gamma of the R1 gradient penalty on real images"
                                      " (0: none; default: the recipe's)")
    r1_every: int = field(16, "apply the R1 penalty every N iterations (lazy: weighted by N)")
    lr: Optional[float] = field(None, "Adam learning rate of both networks (default: the"
                                      " recipe's)")
    lr_d: Optional[float] = field(None, "D's learning rate (default: --lr, else the recipe's)")
    lr_g: Optional[float] = field(None, "G's learning rate (default: --lr, else the recipe's)")
    beta1: Optional[float] = field(None, "Adam beta1 (default: the recipe's)")
    beta2: Optional[float] = field(None, "Adam beta2 (default: the recipe's)")
    holdout: int = field(500, "images kept out of training: the Frechet distance compares"
                              " generated images with these (at most a fifth of the data;"
                              " 0: with training images)")
    decode_workers: int = field(2, "image-decoding processes (0: decode in this one)")
    fid_samples: int = field(500, "real and generated images for the Frechet distance")
    grid_size: int = field(64, "images in each epoch's sample grid")
    max_images: Optional[int] = field(None, "use only the first N images")
    sync_bn: bool = field(False, "synchronise BatchNorm statistics across the --ctx GPUs"
                                 " (MXNet's SyncBatchNorm; GPUs only; within each worker of"
                                 " a distributed run)", group="model")

    dtype: str = field("auto", "what the convolutions compute in: bfloat16 (CPUs, oneDNN),"
                               " float16 (GPUs, with loss scaling), float32, or auto: the"
                               " faster of the low precision and float32 as measured here;"
                               " weights, optimizer, batch norm and losses stay float32",
                       choices=PRECISIONS)

    CHANGEABLE_ON_RESUME = RunConfig.CHANGEABLE_ON_RESUME + ("decode_workers", "dtype")
    # what checkpoints written before these settings existed trained with
    OLDER_DEFAULTS: ClassVar[Dict[str, Any]] = {"holdout": 0, "recipe": "dcgan"}

    def __post_init__(self):
        """Unset settings take the recipe's values (``--lr`` sets both rates)."""
        recipe = RECIPES.get(self.recipe)
        if recipe is None:
            raise MXGenError("--recipe must be one of %s, got %r"
                             % (", ".join(RECIPES), self.recipe))
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, self.lr if name in ("lr_d", "lr_g") and self.lr is not None
                        else value)

    def dry_run_limits(self):
        super().dry_run_limits()
        self.max_images = min(self.max_images or 256, 256)
        self.fid_samples = min(self.fid_samples, 64)
        self.holdout = min(self.holdout, 32)

    def validate(self):
        super().validate()
        check_ranges(self, dict(
            {k: AT_LEAST_1 for k in ("latent_size", "ngf", "ndf", "grid_size", "max_images")},
            lr=AT_LEAST_0, lr_d=AT_LEAST_0, lr_g=AT_LEAST_0, beta1=FRACTION, beta2=FRACTION,
            ema=FRACTION, r1=AT_LEAST_0, r1_every=AT_LEAST_1, holdout=AT_LEAST_0,
            decode_workers=AT_LEAST_0, fid_samples=(lambda v: v >= 2, ">= 2")))
        if self.r1 and self.d_norm != "none":
            raise MXGenError("--r1 needs --d-norm none: the penalty is on each image's own"
                             " logit, which D's BatchNorm ties to the other images of the batch")
        if self.loss not in LOSSES:
            raise MXGenError("--loss must be one of %s, got %r" % (", ".join(LOSSES), self.loss))
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

    ``step(real, iteration)``: ``real`` this process's share ``(N, nc, S,
    S)`` in [-1, 1] (NumPy or NDArray) of a global batch, split over its
    devices; ``iteration`` the run's step number (from 1: the lazy R1
    penalty and the EMA warm-up follow it, so a resumed run repeats them).
    The noise of the whole global batch is drawn here from MXNet's CPU RNG
    and each device takes the rows of its images, so one process with two
    devices and two workers with one device each draw the same noise.
    Returns a ``(5,)`` NDArray on the first device, not read: the sums over
    the batch of loss_D, loss_G, D(x), D(G(z)) (sigmoid of the logits) and
    the R1 penalty as applied (``r1_every`` times the penalty on the
    iterations that apply it, 0 on the others).

    ``skip_d_weight_grads`` (mxgen's loop) computes no D weight gradients in
    (2), where they would be thrown away; ``False`` is the straightforward
    loop, kept as a benchmark baseline.  ``loss``, ``r1``, ``r1_every`` and
    ``ema`` (a :class:`~mxgen.nn.ema.WeightEMA` or None) as in
    :class:`GANTrainConfig`; a discriminator with spectral norm gets one
    power-iteration step per iteration.
    """

    def __init__(self, gen, disc, trainer_g, trainer_d, ctxs, latent_size,
                 skip_d_weight_grads=True, rank=0, num_workers=1, loss="bce", r1=0.0,
                 r1_every=16, ema=None, tangent=None):
        self.gen, self.disc, self.ctxs = gen, disc, ctxs
        self.tangent = tangent        # an InputTangent of disc where R1 is on
        self.rank, self.num_workers = rank, num_workers
        self.trainer_g, self.trainer_d = trainer_g, trainer_d
        self.latent_size, self.skip = latent_size, skip_d_weight_grads
        self.loss, self.r1, self.r1_every, self.ema = loss, r1, r1_every, ema
        self.disc_params = list(disc.collect_params().values())
        self.gen_params = list(gen.collect_params().values())
        self.spectral = spectral_layers(disc)
        self.scaler = None        # a LossScaler when the networks compute in float16

    def __call__(self, real, iteration=1):
        local = real.shape[0]
        batch = local * self.num_workers                      # the global batch
        reals = gluon.utils.split_and_load(real, self.ctxs)
        noise = mx.nd.random.normal(shape=(batch, self.latent_size, 1, 1), ctx=mx.cpu())
        noises = gluon.utils.split_and_load(
            noise[self.rank * local:(self.rank + 1) * local], self.ctxs)
        power_iteration(self.spectral, self.ctxs)
        # (1) Update D: real images scored real, generated ones (detached) fake;
        # every r1_every iterations the R1 penalty's gradient is added first
        lazy_r1 = self.r1 > 0 and iteration % self.r1_every == 0
        with _weight_grads(self.disc_params, "add" if lazy_r1 else None):
            penalties = self._r1_gradients(reals) if lazy_r1 else None
            with autograd.record():
                fakes = [self.gen(z) for z in noises]
                out_real = [self.disc(x) for x in reals]
                out_fake = [self.disc(f.detach()) for f in fakes]
                errs_d = [d_loss(mx.nd, self.loss, r, f) for r, f in zip(out_real, out_fake)]
            scale = scaled_backward(errs_d, self.scaler)
            scaled_step(self.trainer_d, self.disc_params, self.ctxs[0], batch, self.scaler,
                        scale)
        # (2) Update G through the G graph recorded in (1).  D's weights get
        # no gradient here, only its input: skipping them saves a third of
        # this backward pass.
        with _weight_grads(self.disc_params if self.skip else [], "null"):
            with autograd.record():
                errs_g = [g_loss(mx.nd, self.loss, self.disc(f)) for f in fakes]
            scale = scaled_backward(errs_g, self.scaler)
        if scaled_step(self.trainer_g, self.gen_params, self.ctxs[0], batch, self.scaler,
                       scale) and self.ema is not None:
            self.ema.update(iteration)
        sums = [mx.nd.stack(e_d.sum(), e_g.sum(), mx.nd.sigmoid(r).sum(),
                            mx.nd.sigmoid(f).sum()).reshape((4,)).as_in_context(self.ctxs[0])
                for e_d, e_g, r, f in zip(errs_d, errs_g, out_real, out_fake)]
        r1_sum = mx.nd.add_n(*penalties) if penalties else mx.nd.zeros((1,), ctx=self.ctxs[0])
        return mx.nd.concat(mx.nd.add_n(*sums), r1_sum.reshape((1,)), dim=0)

    def _r1_gradients(self, reals):
        """Add the lazy R1 penalty's weight gradient, ``r1_every * gamma / 2 *
        sum_i |dD(x_i)/dx_i|^2`` over the real images, to D's gradients
        (whose request is ``add``); returns its values per device (NDArrays
        of shape (1,), not read).

        ``grad_w 1/2 |g|^2 = grad_w (dD/dx . g)`` with ``g = dD/dx`` held
        fixed: one backward pass for ``g``, then the gradient of
        :class:`~mxgen.models.dcgan.InputTangent` at ``t = g``."""
        weight = self.r1 * self.r1_every
        scale = 1.0 if self.scaler is None else self.scaler.scale
        reals = [x.detach() for x in reals]   # the gradient buffers stay off D's update's
        with _weight_grads(self.disc_params, "null"):          # input gradients only
            for x in reals:
                x.attach_grad()
            with autograd.record():
                outs = [self.disc(x) for x in reals]
            autograd.backward(outs, [mx.nd.full(o.shape, scale, ctx=o.context) for o in outs])
            grads = [x.grad / scale for x in reals]
        with autograd.record():
            slopes = [self.tangent(x.detach(), g) for x, g in zip(reals, grads)]   # g fixed
        autograd.backward(slopes, [mx.nd.full(s.shape, weight * scale, ctx=s.context)
                                   for s in slopes])
        return [weight / 2 * mx.nd.sum(mx.nd.square(g)).reshape((1,)) for g in grads]


def build_gan_step(model_cfg, lr, beta1, ctxs, hybridize=True, skip_d_weight_grads=True,
                   cluster=None, batch_size=None, sync_bn=False, dtype="float32", loss="bce",
                   spectral_norm=False, ema=0.0, r1=0.0, r1_every=16, lr_d=None, lr_g=None,
                   beta2=0.999, d_norm="batch"):
    """Networks (DCGAN init), trainers and step as ``train_gan`` builds them:
    returns ``(generator, discriminator, step)``; ``step.ema.shadow`` is the
    averaged generator when ``ema`` > 0.  ``lr`` is both learning rates
    unless ``lr_d``/``lr_g`` are given; ``batch_size`` (the global batch) is
    needed under dist_async, whose servers divide by it; ``dtype`` what the
    convolutions compute in (float16 adds loss scaling); the rest as in
    :class:`GANTrainConfig`."""
    cluster = cluster or Cluster(None, ctxs)
    sync = 0
    if sync_bn:
        if any(c.device_type != "gpu" for c in ctxs):
            raise MXGenError("--sync-bn synchronises BatchNorm across GPUs and needs GPU devices"
                             " (--ctx gpu:0,1,...); MXNet's SyncBatchNorm waits forever on"
                             " CPU devices (--ctx %s)" % ",".join(str(c) for c in ctxs))
        sync = len(ctxs)

    def generator():
        return get_model("dcgan_generator", image_size=model_cfg.image_size,
                         latent_size=model_cfg.latent_size, ngf=model_cfg.ngf, nc=model_cfg.nc,
                         sync_bn_devices=sync, prefix="generator_")

    def discriminator(**kwargs):
        return get_model("dcgan_discriminator", image_size=model_cfg.image_size,
                         ndf=model_cfg.ndf, nc=model_cfg.nc, sync_bn_devices=sync,
                         spectral_norm=spectral_norm, batch_norm=d_norm == "batch",
                         prefix="discriminator_", **kwargs)
    gen, disc = generator(), discriminator()
    for net in (gen, disc):
        dcgan_init(net, ctxs)
    trainers = [cluster.trainer(net.collect_params(), "adam",
                                {"learning_rate": rate if rate is not None else lr,
                                 "beta1": beta1, "beta2": beta2}, batch_size=batch_size)
                for net, rate in ((gen, lr_g), (disc, lr_d))]
    tangent = InputTangent(disc, prefix="discriminator_") if r1 else None
    for net in (gen, disc) + ((tangent,) if tangent else ()):
        if hybridize:
            net.hybridize(static_alloc=True)
        set_compute_dtype(net, dtype)
    averaged = None
    if ema:
        shadow = generator()
        averaged = WeightEMA(gen, shadow, ema, ctxs[0])
        set_compute_dtype(shadow, dtype, for_training=False)
        if hybridize:
            shadow.hybridize(static_alloc=True)
    step = GANStep(gen, disc, trainers[0], trainers[1], ctxs, model_cfg.latent_size,
                   skip_d_weight_grads, cluster.rank, cluster.num_workers, loss=loss, r1=r1,
                   r1_every=r1_every, ema=averaged, tangent=tangent)
    step.scaler = LossScaler() if dtype == "float16" else None
    return gen, disc, step


def gan_dtype(cfg, ctxs, batch):
    """``(dtype, reason)`` for a DCGAN of ``cfg`` (a train config) on ``ctxs``,
    ``batch`` images per device: ``auto`` times a training step in both."""
    shape = {"image_size": cfg.image_size, "latent_size": cfg.latent_size, "ngf": cfg.ngf,
             "ndf": cfg.ndf, "nc": cfg.channels, "batch": batch}
    return explain_precision(cfg.dtype, ctxs, "the DCGAN step", "mxgen._timing:gan_dtype",
                             shape)


class GANTask(Task):
    """The shared loop's hooks for a DCGAN: the step is :class:`GANStep`;
    after every epoch a sample grid from the fixed noise and the Frechet
    distance against held-out images (rank 0; both from the EMA generator
    when there is one), the best checkpoint by that distance."""
    metrics = ("loss_d", "loss_g", "d_real", "d_fake", "r1")
    unit = "images"

    def __init__(self, run):
        super().__init__(run)
        cfg, ctxs, progress = run.cfg, run.ctxs, run.progress
        self.model_cfg = model_cfg = cfg.model_config()
        images = image_folder(cfg, cfg.data, cfg.image_size, cfg.channels).images
        self.train_images, held = _split_holdout(images, cfg.holdout, cfg.seed)
        if len(self.train_images) < cfg.batch_size:
            raise MXGenError("%s has %d images left for training after holding out %d for the"
                             " Frechet distance, fewer than one batch (%d); lower --batch-size"
                             " or --holdout" % (cfg.data, len(self.train_images), len(held),
                                                cfg.batch_size))
        self.num_batches = len(self.train_images) // cfg.batch_size
        pool = held if len(held) else images
        fid_idx = np.random.RandomState(cfg.seed + 7).choice(
            len(pool), min(cfg.fid_samples, len(pool)), replace=False)
        self.fid_real = to_float(pool[np.sort(fid_idx)])
        self.fid_against = "%d held-out images" % len(self.fid_real) if len(held) else \
            "%d training images" % len(self.fid_real)
        run.keep_kernels(("dtype",), {"dtype": "float32"})
        self.dtype, dtype_reason = gan_dtype(
            cfg, ctxs, max(1, cfg.batch_size // run.cluster.num_workers // len(ctxs)))
        mx.random.seed(cfg.seed)
        self.gen, self.disc, self.step_fn = build_gan_step(
            model_cfg, cfg.lr, cfg.beta1, ctxs, cluster=run.cluster, batch_size=cfg.batch_size,
            sync_bn=cfg.sync_bn, dtype=self.dtype, loss=cfg.loss,
            spectral_norm=cfg.spectral_norm, d_norm=cfg.d_norm, ema=cfg.ema, r1=cfg.r1,
            r1_every=cfg.r1_every, lr_d=cfg.lr_d, lr_g=cfg.lr_g, beta2=cfg.beta2)
        ema = self.step_fn.ema
        self.sampler = ema.shadow if ema is not None else self.gen   # what samples come from
        self.lo, self.hi = run.cluster.shard(cfg.batch_size)   # this rank's images of a batch
        noise = self.noise = {"noise": mx.nd.random.normal(
            shape=(max(cfg.grid_size, len(self.fid_real)), cfg.latent_size, 1, 1),
            ctx=ctxs[0])}
        self.features = frechet_features(cfg.channels, ctx=ctxs[0])
        progress.setdefault("best_fd", None)
        nets = {"generator": self.gen, "discriminator": self.disc}
        if ema is not None:
            nets["generator_ema"] = ema.shadow
        run.track(nets=nets,
                  trainers={"trainer_g": self.step_fn.trainer_g,
                            "trainer_d": self.step_fn.trainer_d},
                  arrays=lambda: {"fixed_noise": noise},
                  meta=lambda: {"model": model_cfg.to_dict(), "feature_net": self.features.name,
                                "kernels": {"dtype": self.dtype}},
                  before_save=self._refresh_ema)
        if run.restore():
            noise["noise"] = run.load_arrays("fixed_noise")["noise"].as_in_context(ctxs[0])
            self.restore_scaler(self.step_fn.scaler)
        run.log("precision: %s (%s)" % (self.dtype, dtype_reason))
        run.log("recipe %s: loss %s, spectral norm %s, D norm %s, EMA %s, R1 %s, lr D %g / G"
                " %g, Adam betas %g / %g"
                % (cfg.recipe, cfg.loss, "on" if cfg.spectral_norm else "off", cfg.d_norm,
                   cfg.ema or "off", "%g every %d" % (cfg.r1, cfg.r1_every) if cfg.r1 else "off",
                   cfg.lr_d, cfg.lr_g, cfg.beta1, cfg.beta2))
        self.real_features = self.features.features(self.fid_real)
        self.flops = gan_flops_per_image(model_cfg)
        self.fd, self.grid = progress["best_fd"], None
        run.log("data %s: %d images %dx%d (%d held out), %d batches of %d per epoch; Frechet"
                " distance: %s features, %d generated vs %s"
                % (cfg.data, len(images), cfg.image_size, cfg.image_size, len(held),
                   self.num_batches, cfg.batch_size, self.features.name, len(self.fid_real),
                   self.fid_against))
        if run.cluster.is_writer:
            os.makedirs(os.path.join(cfg.out, "samples"), exist_ok=True)
            if not run.resume_from:      # the baseline later distances are compared with
                fd0 = self._frechet()[0]
                run.metrics.write(kind="eval", step=0, epoch=0, frechet_distance=fd0,
                                  feature_net=self.features.name)
                run.log("Frechet distance at initialisation: %.3f" % fd0)
        self.plot = dict(series={"loss_d": "train", "loss_g": "train"},
                         title="DCGAN %dx%d on %s" % (cfg.image_size, cfg.image_size,
                                                      os.path.basename(cfg.data.rstrip("/"))))

    def _refresh_ema(self):
        """The EMA generator's batch norms get statistics of its own weights,
        from the first batches of the fixed noise (a few batches of
        ``--batch-size``, as in training), before it is evaluated or saved."""
        if self.step_fn.ema is not None:
            noise, size = self.noise["noise"], self.run.cfg.batch_size
            count = max(1, min(4, noise.shape[0] // size))
            self.step_fn.ema.refresh_statistics(
                [noise[i * size:(i + 1) * size] for i in range(count)])

    def _frechet(self):
        self._refresh_ema()
        fake = generate_images(self.sampler, self.noise["noise"][:len(self.fid_real)])
        return frechet_distance(self.real_features, self.features.features(fake)), fake

    def begin_epoch(self, epoch):
        cfg = self.run.cfg
        self.batches = image_batches(self.train_images, cfg.batch_size, cfg.seed, epoch,
                                     self.run.progress["batch"])

    def step(self):
        self.run.seed_step()
        sums = self.step_fn(to_float(next(self.batches)[self.lo:self.hi]),   # this rank's
                            self.run.step)
        self.record_scaler(self.step_fn.scaler)
        return sums, self.hi - self.lo, None

    def train_record(self, means, speed, extra):
        fields, _ = super().train_record(means, speed, extra)
        fields["gflop_per_s"] = speed * self.flops / 1e9
        return fields, {"loss_d": "%.3f" % means[0], "loss_g": "%.3f" % means[1],
                        "img_s": "%.0f" % speed}

    def evaluate(self, epoch_done):
        run, cfg = self.run, self.run.cfg
        if not run.cluster.is_writer:            # rank 0 alone evaluates
            return None, False
        self.fd, fake = self._frechet()
        self.grid = save_grid(fake[:cfg.grid_size], os.path.join(
            cfg.out, "samples", "epoch_%03d_step_%07d.png" % (run.epoch, run.step)))
        if run.tensorboard is not None:
            run.tensorboard.image("samples", self.grid, run.step)
        improved = run.improves("best_fd", self.fd)
        run.log("epoch %d step %d: Frechet distance %.3f (%s features, %d samples vs %s%s)%s;"
                " grid %s" % (run.epoch, run.step, self.fd, self.features.name,
                              len(self.fid_real), self.fid_against,
                              ", EMA generator" if self.sampler is not self.gen else "",
                              " *best*" if improved else "", self.grid))
        return dict(kind="eval", step=run.step, epoch=run.epoch, frechet_distance=self.fd,
                    feature_net=self.features.name, grid=self.grid,
                    ema=self.sampler is not self.gen, elapsed_s=run.elapsed()), improved

    def summary(self):
        return dict(frechet_distance=self.fd, best_fd=self.run.progress["best_fd"],
                    grid=self.grid, feature_net=self.features.name, generator=self.gen,
                    discriminator=self.disc, sampler=self.sampler)


def _split_holdout(images, holdout, seed):
    """``(training images, held-out images)``: ``min(holdout, N // 5)``
    images drawn by ``seed`` are kept out of training (each keeps its order)."""
    held = min(holdout, len(images) // 5)
    chosen = np.zeros(len(images), dtype=bool)
    chosen[np.random.RandomState(seed + 11).permutation(len(images))[:held]] = True
    return images[~chosen], images[chosen]


def train_gan(cfg: GANTrainConfig, log: Optional[Callable[[str], None]] = None,
              explicit: Iterable[str] = ()) -> Dict[str, Any]:
    """Train (or resume) a DCGAN; returns a summary dict."""
    with Run(cfg, FAMILY, explicit, log) as run:
        return run.train(GANTask(run))


class _weight_grads:
    """Temporarily set ``grad_req`` to ``req`` ('null' or 'add'; None: leave
    them) on those of ``params`` that take a gradient; each gets its own
    request back.  (Changing a request gives the parameter new, zeroed
    gradient arrays: under 'add' they start from zero.)"""

    def __init__(self, params, req):
        self.req = req
        self.saved = [(p, p.grad_req) for p in params if p.grad_req != "null"] if req else []

    def __enter__(self):
        for p, _ in self.saved:
            p.grad_req = self.req

    def __exit__(self, *exc):
        for p, req in self.saved:
            p.grad_req = req
        return False
