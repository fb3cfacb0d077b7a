"""One full DCGAN iteration (D on real + fake, then G), hybridized vs eager."""
import mxnet as mx
from mxnet import autograd, gluon

from mxgen.models import DCGANConfig, Discriminator, Generator
from mxgen.models.dcgan import dcgan_init
from mxgen.train.gan import _no_weight_grads, gan_flops_per_image

from conftest import compare

PEAK_NOTE = "machine fp32 matmul peak measured at ~490 GFLOP/s (2048^3 FullyConnected)"


def _iteration(size, batch, hybrid):
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
        if hybrid:           # the candidate is mxgen's loop: no D weight grads in (2)
            with _no_weight_grads(disc_params):
                with autograd.record():
                    err_g = loss(disc(fake), ones)
                err_g.backward()
        else:                # the baseline is the tutorial's straightforward eager loop
            with autograd.record():
                err_g = loss(disc(fake), ones)
            err_g.backward()
        trainer_g.step(batch)
    return step


def test_dcgan_iteration(benchmark, quick):
    size, batch = (32, 16) if quick else (64, 64)
    rounds, warmup = (2, 1) if quick else (10, 2)
    cand, _ = compare(benchmark, _iteration(size, batch, True),
                      {"eager": _iteration(size, batch, False)}, batch, "images", rounds, warmup,
                      {"model": "DCGAN %dx%d, ngf=ndf=64" % (size, size), "batch": batch,
                       "peak_note": PEAK_NOTE})
    flops = gan_flops_per_image(DCGANConfig(image_size=size))
    benchmark.extra_info["gflop_per_image"] = round(flops / 1e9, 3)
    benchmark.extra_info["gflop_per_s"] = round(cand * flops / 1e9, 1)
