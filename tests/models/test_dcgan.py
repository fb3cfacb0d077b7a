import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from mxgen.errors import MXGenError
from mxgen.models import Discriminator, Generator
from mxgen.models.dcgan import dcgan_init


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_ranges_and_hybrid_eager_agree(size, seed):
    gen = dcgan_init(Generator(size, latent_size=20, ngf=8, nc=3))
    disc = dcgan_init(Discriminator(size, ndf=8, nc=3))
    z = mx.nd.random.normal(shape=(5, 20, 1, 1))
    for train in (False, True):
        with autograd.record(train_mode=train):
            eager_img = gen(z)
            eager_logit = disc(eager_img)
        gen.hybridize(static_alloc=True)
        disc.hybridize(static_alloc=True)
        with autograd.record(train_mode=train):
            hybrid_img = gen(z)
            hybrid_logit = disc(hybrid_img)
        gen.hybridize(active=False)
        disc.hybridize(active=False)
        np.testing.assert_allclose(hybrid_img.asnumpy(), eager_img.asnumpy(), atol=1e-5)
        np.testing.assert_allclose(hybrid_logit.asnumpy(), eager_logit.asnumpy(), atol=1e-4)
    assert eager_img.shape == (5, 3, size, size)
    assert eager_logit.shape == (5,)
    assert eager_img.min().asscalar() >= -1 and eager_img.max().asscalar() <= 1


def test_architecture_follows_the_paper(seed):
    gen = dcgan_init(Generator(64, latent_size=100, ngf=64, nc=3))
    disc = dcgan_init(Discriminator(64, ndf=64, nc=3))
    # no biases anywhere in the convolutions (all precede BatchNorm or the output)
    assert not [n for n in gen.collect_params() if n.endswith("bias")]
    assert not [n for n in disc.collect_params() if n.endswith("bias")]
    g_shapes = [p.shape for n, p in gen.collect_params().items() if n.endswith("weight")]
    assert g_shapes == [(100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4),
                        (128, 64, 4, 4), (64, 3, 4, 4)]
    d_shapes = [p.shape for n, p in disc.collect_params().items() if n.endswith("weight")]
    assert d_shapes == [(64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4),
                        (1, 512, 4, 4)]
    # the first D block has no BatchNorm; the others do
    assert len([n for n in disc.collect_params() if n.endswith("gamma")]) == 3
    w = [p for n, p in gen.collect_params().items() if n.endswith("weight")][1].data().asnumpy()
    assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002
    gamma = [p for n, p in gen.collect_params().items() if n.endswith("gamma")][0]
    assert abs(gamma.data().asnumpy().mean() - 1.0) < 0.01


def test_bad_config():
    with pytest.raises(MXGenError, match="32 or 64"):
        Generator(48)
    with pytest.raises(MXGenError, match="channels"):
        Discriminator(64, nc=4)


def test_sync_bn_networks_hold_the_same_parameters_as_plain_ones():
    """--sync-bn swaps BatchNorm for SyncBatchNorm (GPUs only; not run here:
    it waits forever on CPU devices): the structure and parameter shapes are
    the plain network's, so a checkpoint trained either way loads into the
    other (sampling always builds the plain one)."""
    from mxnet.gluon.contrib.nn import SyncBatchNorm
    for cls, kw in ((Generator, dict(latent_size=16, ngf=8)), (Discriminator, dict(ndf=8))):
        plain, synced = cls(image_size=32, **kw), cls(image_size=32, sync_bn_devices=2, **kw)
        assert any(isinstance(b, SyncBatchNorm) for b in synced.body)
        assert not any(isinstance(b, SyncBatchNorm) for b in plain.body)
        shapes = [{k: p.shape for k, p in net._collect_params_with_prefix().items()}
                  for net in (plain, synced)]
        assert shapes[0] == shapes[1]
