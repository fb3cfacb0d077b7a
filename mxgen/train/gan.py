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
from dataclasses import asdict, dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data.images import SHAPES, ImageFolder, save_grid, to_float
from ..errors import MXGenError
from ..models.dcgan import DCGANConfig, Discriminator, Generator, dcgan_init
from ..utils import checkpoint as ckpt
from ..utils.context import check_batch_split, parse_ctx
from ..utils.frechet import frechet_distance, get_feature_net
from ..utils.metrics import MetricsLog, plot_curves
from .common import (derive_seed, load_parameters, merge_resumed, params_finite,
                     save_parameters, stop_reason)

__all__ = ["GANTrainConfig", "train_gan", "load_gan", "gan_flops_per_image"]

FAMILY = "dcgan"


@dataclass
class GANTrainConfig:
    data: str = SHAPES
    out: str = "runs/gan"
    image_size: int = 64
    latent_size: int = 100
    ngf: int = 64
    ndf: int = 64
    channels: int = 3
    batch_size: int = 64
    epochs: int = 10
    lr: float = 2e-4
    beta1: float = 0.5
    ctx: str = "cpu"
    seed: int = 0
    num_workers: int = 2
    fid_samples: int = 500
    grid_size: int = 64
    log_interval: int = 10
    max_minutes: Optional[float] = None
    max_steps: Optional[int] = None
    max_images: Optional[int] = None
    dry_run: bool = False
    resume: bool = False
    progress: bool = True

    RUN_LENGTH = ("epochs", "max_minutes", "max_steps", "progress", "log_interval", "out",
                  "resume", "ctx", "dry_run", "num_workers")

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


def _build(model_cfg, ctxs):
    gen = Generator(model_cfg.image_size, model_cfg.latent_size, model_cfg.ngf, model_cfg.nc,
                    prefix="generator_")
    disc = Discriminator(model_cfg.image_size, model_cfg.ndf, model_cfg.nc,
                         prefix="discriminator_")
    dcgan_init(gen, ctxs)
    dcgan_init(disc, ctxs)
    gen.hybridize(static_alloc=True)
    disc.hybridize(static_alloc=True)
    return gen, disc


def load_gan(path, ctx=None, prefer="latest"):
    """Load a generator from a checkpoint: returns ``(generator, config, ckpt_dir)``."""
    ckpt_dir = ckpt.resolve(path, prefer=prefer)
    manifest = ckpt.read_manifest(ckpt_dir, required=("config.json",))
    meta = ckpt.read_json(ckpt_dir, "config.json")
    if meta.get("family") != FAMILY:
        raise MXGenError("checkpoint %s holds a %r model, not a DCGAN" % (ckpt_dir,
                                                                          meta.get("family")))
    ckpt.require_files(manifest, ckpt_dir, ("generator.params",))
    try:
        model_cfg = DCGANConfig(**meta["model"]).validate()
    except (TypeError, KeyError) as err:
        raise MXGenError("checkpoint %s has a malformed model config: %s" % (ckpt_dir, err)) \
            from None
    ctx = ctx or mx.cpu()
    gen = Generator(model_cfg.image_size, model_cfg.latent_size, model_cfg.ngf, model_cfg.nc,
                    prefix="generator_")
    load_parameters(gen, os.path.join(ckpt_dir, "generator.params"), ctx, "this generator")
    gen.hybridize(static_alloc=True)
    return gen, model_cfg, ckpt_dir


class _EpochSampler(gluon.data.Sampler):
    """A seeded permutation per epoch, started at ``start`` (for exact resume)."""

    def __init__(self, length, batch_size, seed, epoch, start_batch):
        order = np.random.RandomState(seed + epoch).permutation(length)
        usable = (length // batch_size) * batch_size       # last partial batch dropped
        self.order = order[start_batch * batch_size:usable]

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self):
        return len(self.order)


def _generate(gen, noise, batch=256):
    out = []
    with autograd.predict_mode():
        for i in range(0, noise.shape[0], batch):
            out.append(gen(noise[i:i + batch]).asnumpy())
    return np.concatenate(out)


def train_gan(cfg, log=print, explicit=()):
    """Train (or resume) a DCGAN; returns a summary dict."""
    started = time.time()
    ctxs = parse_ctx(cfg.ctx)
    resume_from = None
    if cfg.resume:
        resume_from = ckpt.resolve(cfg.out, prefer="latest")
        ckpt.read_manifest(resume_from, required=("config.json", "generator.params",
                                                  "discriminator.params", "trainer_g.states",
                                                  "trainer_d.states", "progress.json",
                                                  "fixed_noise.nd"))
        saved = ckpt.read_json(resume_from, "config.json")
        if saved.get("family") != FAMILY or "train" not in saved:
            raise MXGenError("cannot resume from %s: it is not a DCGAN checkpoint" % resume_from)
        cfg = merge_resumed(GANTrainConfig, saved["train"], cfg, explicit, log)
    if cfg.dry_run:
        cfg.max_images = min(cfg.max_images or 256, 256)
        cfg.epochs, cfg.max_steps = 1, 2
        cfg.fid_samples = min(cfg.fid_samples, 64)
    check_batch_split(cfg.batch_size, ctxs)
    model_cfg = cfg.model_config()
    os.makedirs(os.path.join(cfg.out, "samples"), exist_ok=True)

    # ---- data -------------------------------------------------------------
    images = ImageFolder(cfg.data, cfg.image_size, cfg.channels, num_workers=cfg.num_workers,
                         limit=cfg.max_images, seed=cfg.seed)
    if len(images) < cfg.batch_size:
        raise MXGenError("%s has %d usable images, fewer than one batch (%d); lower"
                         " --batch-size" % (cfg.data, len(images), cfg.batch_size))
    batches_per_epoch = len(images) // cfg.batch_size
    fid_rng = np.random.RandomState(cfg.seed + 7)
    fid_real_idx = fid_rng.choice(len(images), min(cfg.fid_samples, len(images)), replace=False)
    fid_real = to_float(images.images[np.sort(fid_real_idx)])

    # ---- networks, trainers -------------------------------------------------
    mx.random.seed(cfg.seed)
    gen, disc = _build(model_cfg, ctxs)
    opt = {"learning_rate": cfg.lr, "beta1": cfg.beta1}
    kv = "device" if len(ctxs) > 1 else None
    trainer_g = gluon.Trainer(gen.collect_params(), "adam", opt, kvstore=kv)
    trainer_d = gluon.Trainer(disc.collect_params(), "adam", opt, kvstore=kv)
    loss_fn = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    disc_params = list(disc.collect_params().values())
    fixed_noise = mx.nd.random.normal(shape=(max(cfg.grid_size, len(fid_real)),
                                             cfg.latent_size, 1, 1), ctx=ctxs[0])
    progress = {"epoch": 0, "batch": 0, "step": 0, "best_fd": None}
    if resume_from:
        load_parameters(gen, os.path.join(resume_from, "generator.params"), ctxs,
                        "this generator")
        load_parameters(disc, os.path.join(resume_from, "discriminator.params"), ctxs,
                        "this discriminator")
        trainer_g.load_states(os.path.join(resume_from, "trainer_g.states"))
        trainer_d.load_states(os.path.join(resume_from, "trainer_d.states"))
        fixed_noise = mx.nd.load(os.path.join(resume_from, "fixed_noise.nd"))["noise"] \
            .as_in_context(ctxs[0])
        progress = ckpt.read_json(resume_from, "progress.json")
        log("resuming from %s (epoch %d, batch %d, step %d)"
            % (resume_from, progress["epoch"], progress["batch"], progress["step"]))
    feature_net = get_feature_net(cfg.channels, ctx=ctxs[0])
    real_features = feature_net.features(fid_real)
    metrics = MetricsLog(os.path.join(cfg.out, "metrics.jsonl"), resume=bool(resume_from))
    flops = gan_flops_per_image(model_cfg)
    log("data %s: %d images %dx%d, %d batches of %d per epoch; Frechet distance features: %s"
        % (cfg.data, len(images), cfg.image_size, cfg.image_size, batches_per_epoch,
           cfg.batch_size, feature_net.name))

    if not resume_from:               # the baseline every later distance is compared with
        fd0 = frechet_distance(real_features,
                               feature_net.features(_generate(gen, fixed_noise[:len(fid_real)])))
        metrics.write(kind="eval", step=0, epoch=0, frechet_distance=fd0,
                      feature_net=feature_net.name)
        log("Frechet distance at initialisation: %.3f" % fd0)

    step, steps_this_run, stop = progress["step"], 0, None
    last_ckpt = resume_from
    per_device = cfg.batch_size // len(ctxs)

    def save(point_best=False):
        if not (params_finite(gen.collect_params().values())
                and params_finite(disc.collect_params().values())):
            raise MXGenError("refusing to save a checkpoint: parameters are not finite")
        progress["step"] = step
        writer = ckpt.CheckpointWriter(cfg.out, step)
        with writer:
            save_parameters(gen, writer.path("generator.params"))
            save_parameters(disc, writer.path("discriminator.params"))
            trainer_g.save_states(writer.path("trainer_g.states"))
            trainer_d.save_states(writer.path("trainer_d.states"))
            mx.nd.save(writer.path("fixed_noise.nd"), {"noise": fixed_noise.as_in_context(mx.cpu())})
            writer.write_json("config.json", {"family": FAMILY, "model": model_cfg.to_dict(),
                                              "train": asdict(cfg),
                                              "feature_net": feature_net.name})
            writer.write_json("progress.json", progress)
        writer.point("latest")
        if point_best:
            writer.point("best")
        writer.prune()
        return writer.final_dir

    from tqdm import tqdm
    epoch = progress["epoch"]
    fd, grid_path = progress["best_fd"], None
    if epoch >= cfg.epochs:
        log("nothing to train: the run has finished %d of %d epochs (pass --epochs N to go on)"
            % (epoch, cfg.epochs))
    while epoch < cfg.epochs and stop is None:
        start_batch = progress["batch"]
        sampler = _EpochSampler(len(images), cfg.batch_size, cfg.seed, epoch, start_batch)
        loader = gluon.data.DataLoader(gluon.data.ArrayDataset(images.images),
                                       batch_size=cfg.batch_size, sampler=sampler,
                                       last_batch="discard")
        bar = tqdm(total=batches_per_epoch, initial=start_batch, disable=not cfg.progress,
                   desc="epoch %d" % (epoch + 1), unit="batch", leave=False)
        sums = [mx.nd.zeros((4,), ctx=ctxs[0])]     # loss_d, loss_g, D(x), D(G(z)) sums
        count, t_log, first_step = 0, time.time(), step + 1
        for i, batch in enumerate(loader, start=start_batch):
            mx.random.seed(derive_seed(cfg.seed, step))
            reals = gluon.utils.split_and_load(to_float(batch), ctxs)
            noises = [mx.nd.random.normal(shape=(per_device, cfg.latent_size, 1, 1), ctx=c)
                      for c in ctxs]
            ones = [mx.nd.ones((per_device,), ctx=c) for c in ctxs]
            zeros = [mx.nd.zeros((per_device,), ctx=c) for c in ctxs]
            # (1) Update D: maximise log D(x) + log(1 - D(G(z)))
            with autograd.record():
                fakes = [gen(z) for z in noises]
                out_real = [disc(x) for x in reals]
                out_fake = [disc(f.detach()) for f in fakes]
                errs_d = [loss_fn(r, o) + loss_fn(f, zz)
                          for r, f, o, zz in zip(out_real, out_fake, ones, zeros)]
            autograd.backward(errs_d)
            trainer_d.step(cfg.batch_size)
            # (2) Update G: maximise log D(G(z)), through the G graph recorded above.
            # D's weights get no gradient here (only its input does): skipping
            # them saves a third of this backward pass (~8% of the iteration).
            with _no_weight_grads(disc_params):
                with autograd.record():
                    errs_g = [loss_fn(disc(f), o) for f, o in zip(fakes, ones)]
                autograd.backward(errs_g)
            trainer_g.step(cfg.batch_size)
            for k in range(len(ctxs)):
                sums[0] += mx.nd.stack(errs_d[k].sum(), errs_g[k].sum(),
                                       mx.nd.sigmoid(out_real[k]).sum(),
                                       mx.nd.sigmoid(out_fake[k]).sum()).reshape((4,)) \
                    .as_in_context(ctxs[0])
            count += cfg.batch_size
            step += 1
            steps_this_run += 1
            progress["batch"] = i + 1
            bar.update(1)
            stop = stop_reason(cfg, started, steps_this_run)
            last_of_epoch = progress["batch"] >= batches_per_epoch
            if step % cfg.log_interval == 0 or stop or last_of_epoch:
                values = sums[0].asnumpy() / count            # the only sync, per log line
                now = time.time()
                if not np.isfinite(values).all():
                    raise MXGenError(
                        "training stopped: non-finite GAN loss in steps %d-%d (loss_D %s,"
                        " loss_G %s); try a lower --lr. Last good checkpoint: %s"
                        % (first_step, step, values[0], values[1], last_ckpt or "none"))
                speed = count / (now - t_log)
                bar.set_postfix(loss_d="%.3f" % values[0], loss_g="%.3f" % values[1],
                                img_s="%.0f" % speed)
                metrics.write(kind="train", step=step, epoch=epoch + 1, loss_d=float(values[0]),
                              loss_g=float(values[1]), d_real=float(values[2]),
                              d_fake=float(values[3]), images_per_s=speed,
                              gflop_per_s=speed * flops / 1e9)
                sums[0][:] = 0
                count, t_log, first_step = 0, now, step + 1
            if stop:
                break
        bar.close()
        if progress["batch"] >= batches_per_epoch:
            epoch += 1
            progress.update(epoch=epoch, batch=0)
        # ---- end of epoch (or run): sample grid, Frechet distance, checkpoint -----
        fake = _generate(gen, fixed_noise[:len(fid_real)])
        fd = frechet_distance(real_features, feature_net.features(fake))
        grid_path = save_grid(fake[:cfg.grid_size],
                              os.path.join(cfg.out, "samples", "epoch_%03d_step_%07d.png"
                                           % (epoch, step)))
        improved = math.isfinite(fd) and (progress["best_fd"] is None or fd < progress["best_fd"])
        if improved:
            progress["best_fd"] = fd
        log("epoch %d step %d: Frechet distance %.3f (%s features, %d samples)%s; grid %s"
            % (epoch, step, fd, feature_net.name, len(fid_real), " *best*" if improved else "",
               grid_path))
        metrics.write(kind="eval", step=step, epoch=epoch, frechet_distance=fd,
                      feature_net=feature_net.name, grid=grid_path,
                      elapsed_s=round(time.time() - started, 1))
        last_ckpt = save(point_best=improved)
        records = metrics.read()
        plot_curves(records, os.path.join(cfg.out, "loss.png"),
                    {"loss_d": "train", "loss_g": "train"}, title="DCGAN %dx%d on %s"
                    % (cfg.image_size, cfg.image_size, os.path.basename(cfg.data.rstrip("/"))))
    if stop:
        log("stopped early (%s) at step %d; resume with --resume" % (stop, step))
    return {"run_dir": cfg.out, "checkpoint": last_ckpt, "step": step, "epoch": epoch,
            "frechet_distance": fd, "best_fd": progress["best_fd"], "grid": grid_path,
            "feature_net": feature_net.name, "stopped": stop, "config": cfg,
            "generator": gen, "discriminator": disc}


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
