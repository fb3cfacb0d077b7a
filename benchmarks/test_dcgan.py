"""One full DCGAN iteration (D on real + fake, then G): mxgen's loop
(hybridized, D's weight gradients skipped in G's update) against the
straightforward loop hybridized (the same algorithm as the baseline: the
hybridization gain alone) and eager (the tutorial's loop: both gains)."""
import mxnet as mx
from mxnet import autograd, gluon

from mxgen.models import DCGANConfig, Discriminator, Generator
from mxgen.models.dcgan import dcgan_init
from mxgen.train.gan import _no_weight_grads, gan_flops_per_image

from conftest import compare, record_compute


def _iteration(size, batch, hybrid, skip_d_weight_grads):
    gen, disc = dcgan_init(Generator(size)), dcgan_init(Discriminator(size))
    if hybrid:
        gen.hybridize(static_alloc=True)
        disc.hybridize(static_alloc=True)
    opt = {"learning_rate": 2e-4, "beta1": 0.5}
    trainer_g = gluon.Trainer(gen.collect_params(), "adam", opt)
    trainer_d = gluon.Trainer(disc.collect_params(), "adam", opt)
    loss = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    real = mx.nd.random.uniform(-1, 1, shape=(batch, 3, size, size))
    ones, zeros = mx.nd.ones((batch,)), mx.nd.zeros((batch,))

    disc_params = list(disc.collect_params().values())

    def step():
        z = mx.nd.random.normal(shape=(batch, 100, 1, 1))
        with autograd.record():
            fake = gen(z)
            err_d = loss(disc(real), ones) + loss(disc(fake.detach()), zeros)
        err_d.backward()
        trainer_d.step(batch)
        if skip_d_weight_grads:   # mxgen's loop: no D weight grads in (2)
            with _no_weight_grads(disc_params):
                with autograd.record():
                    err_g = loss(disc(fake), ones)
                err_g.backward()
        else:                     # the tutorial's straightforward loop
            with autograd.record():
                err_g = loss(disc(fake), ones)
            err_g.backward()
        trainer_g.step(batch)
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
