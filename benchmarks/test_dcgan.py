"""One full DCGAN iteration (D on real + fake, then G): mxgen's loop
(hybridized, D's weight gradients skipped in G's update) against the
straightforward loop hybridized (the same algorithm as the baseline: the
hybridization gain alone) and eager (the tutorial's loop: both gains)."""
import mxnet as mx

from mxgen.models import DCGANConfig
from mxgen.train.gan import build_gan_step, gan_flops_per_image

from conftest import compare, record_compute


def _iteration(size, batch, hybrid, skip_d_weight_grads):
    """``mxgen train-gan``'s step (:class:`mxgen.train.gan.GANStep`, built by the
    same function); ``skip_d_weight_grads=False`` is the straightforward loop."""
    _, _, gan_step = build_gan_step(DCGANConfig(image_size=size), 2e-4, 0.5, [mx.cpu()],
                                    hybridize=hybrid, skip_d_weight_grads=skip_d_weight_grads)
    real = mx.nd.random.uniform(-1, 1, shape=(batch, 3, size, size))

    def step():
        gan_step(real)
    return step


def test_dcgan_iteration(benchmark, quick):
    size, batch = (32, 16) if quick else (64, 64)
    rounds, warmup = (2, 1) if quick else (10, 2)
    cand, base = compare(
        benchmark, _iteration(size, batch, True, True),
        {"eager": _iteration(size, batch, False, False),
         "hybrid_same_loop": _iteration(size, batch, True, False)},
        batch, "images", rounds, warmup,
        {"model": "DCGAN %dx%d, ngf=ndf=64" % (size, size), "batch": batch})
    cfg = DCGANConfig(image_size=size)
    flops, flops_straight = gan_flops_per_image(cfg), gan_flops_per_image(cfg, True)
    info = benchmark.extra_info
    info["gflop_per_image"] = round(flops / 1e9, 3)
    info["gflop_per_image_straightforward_loop"] = round(flops_straight / 1e9, 3)
    record_compute(benchmark, cand, flops)
    info["gflop_per_s_hybrid_same_loop"] = round(base["hybrid_same_loop"] * flops_straight / 1e9, 1)
    # eager vs hybridized on the same loop, and what skipping D's weight
    # gradients adds on top; their product is ratio_vs_eager
    info["hybridization_gain"] = round(base["hybrid_same_loop"] / base["eager"], 3)
    info["algorithmic_gain"] = round(cand / base["hybrid_same_loop"], 3)


def _recipe_iterations(size, batch, iterations, **options):
    """``iterations`` steps of ``GANStep`` built with ``options`` (a recipe's
    settings), the step counter running on so a lazy R1 lands once per
    ``r1_every`` iterations, as in training."""
    options = dict(options)
    lr_d, lr_g = options.pop("lr_d"), options.pop("lr_g")
    beta1 = options.pop("beta1")
    _, _, gan_step = build_gan_step(DCGANConfig(image_size=size), lr_g, beta1, [mx.cpu()],
                                    lr_d=lr_d, lr_g=lr_g, **options)
    real = mx.nd.random.uniform(-1, 1, shape=(batch, 3, size, size))
    counter = [0]

    def step():
        for _ in range(iterations):
            counter[0] += 1
            gan_step(real, counter[0])
    return step


def test_gan_recipe_cost(benchmark, quick):
    """What the stabilisers cost per iteration: ``--recipe stable`` and the
    same with R1 (every 16 iterations, on a D without BatchNorm, as R1
    needs) against ``--recipe dcgan``, each 16 iterations per call."""
    from mxgen.train.gan import RECIPES
    size, batch = (32, 16) if quick else (64, 64)
    rounds, warmup, iters = (2, 1, 4) if quick else (5, 1, 16)
    r1 = dict(RECIPES["stable"], d_norm="none", r1=1.0, r1_every=iters)
    cand, base = compare(
        benchmark, _recipe_iterations(size, batch, iters, **RECIPES["stable"]),
        {"dcgan": _recipe_iterations(size, batch, iters, **RECIPES["dcgan"]),
         "stable_r1": _recipe_iterations(size, batch, iters, **r1)},
        batch * iters, "images", rounds, warmup,
        {"model": "DCGAN %dx%d, ngf=ndf=64" % (size, size), "batch": batch,
         "candidate": "recipe stable", "iterations_per_call": iters})
    info = benchmark.extra_info
    info["stable_cost_vs_dcgan"] = round(base["dcgan"] / cand, 3)
    info["stable_r1_cost_vs_dcgan"] = round(base["dcgan"] / base["stable_r1"], 3)
