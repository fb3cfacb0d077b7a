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
