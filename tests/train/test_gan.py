import json
import os

import mxnet as mx
import numpy as np
import pytest

from mxgen.errors import MXGenError
from mxgen.models import load
from mxgen.train.gan import GANTrainConfig, train_gan
from mxgen.utils.checkpoint import resolve

def _cfg(data, out, **kw):
    base = dict(data=data, out=str(out), image_size=32, ngf=16, ndf=16, batch_size=32,
                epochs=3, progress=False, fid_samples=256, max_images=512, decode_workers=0,
                log_interval=5, seed=2, holdout=0, recipe="dcgan")
    base.update(kw)
    return GANTrainConfig(**base)


def _quiet(*_):
    pass


def _weights(run_dir):
    ckpt = resolve(str(run_dir), "latest")
    return {name: mx.nd.load(os.path.join(ckpt, name)) for name in
            ("generator.params", "discriminator.params")}


def test_training_lowers_frechet_distance_on_real_images(emoji_dir, tmp_path):
    result = train_gan(_cfg(emoji_dir, tmp_path, holdout=256), log=_quiet)
    evals = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    fds = [r["frechet_distance"] for r in evals if r["kind"] == "eval"]
    assert len(fds) == 4                        # at initialisation + 3 epochs
    assert fds[-1] < 0.9 * fds[0], fds
    assert result["feature_net"] == "random_conv_v1"
    train = [r for r in evals if r["kind"] == "train"]
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in train)
    assert os.path.isfile(result["grid"]) and os.path.isfile(tmp_path / "loss.png")


def test_resume_is_bit_exact(tmp_path):
    straight = train_gan(_cfg("shapes", tmp_path / "a", epochs=2, max_images=192), log=_quiet)
    train_gan(_cfg("shapes", tmp_path / "b", epochs=2, max_images=192, max_steps=4), log=_quiet)
    resumed = train_gan(_cfg("shapes", tmp_path / "b", epochs=2, max_images=192, resume=True),
                        log=_quiet)
    assert straight["step"] == resumed["step"] == 12
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for name in a:
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key].asnumpy(), b[name][key].asnumpy(),
                                          err_msg=key)
    loaded = load(str(tmp_path / "b"), family="dcgan")
    gen, config = loaded.model, loaded.config
    assert config.image_size == 32
    assert gen(mx.nd.zeros((1, 100, 1, 1))).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("kw,msg", [
    (dict(batch_size=1, ctx="cpu:0,1"), "smaller than the number of devices"),
    (dict(batch_size=600), "fewer than one batch"),
    (dict(image_size=48), "32 or 64"),
])
def test_bad_settings(tmp_path, kw, msg):
    with pytest.raises(MXGenError, match=msg):
        train_gan(_cfg("shapes", tmp_path, **kw), log=_quiet)


def test_wrong_checkpoints(tmp_path):
    train_gan(_cfg("shapes", tmp_path / "g", epochs=1, max_steps=1, max_images=64), log=_quiet)
    with pytest.raises(MXGenError, match="trained with image_size=32, but 64 was given"):
        train_gan(_cfg("shapes", tmp_path / "g", image_size=64, resume=True), log=_quiet,
                  explicit={"image_size"})
    # a generator of another width or size cannot take these weights
    from mxgen.models import Generator
    from mxgen.utils.checkpoint import load_parameters
    ckpt = resolve(str(tmp_path / "g"), "latest")
    for other in (Generator(32, ngf=32), Generator(64, ngf=16)):
        with pytest.raises(MXGenError, match="do not fit this network"):
            load_parameters(other, os.path.join(ckpt, "generator.params"), mx.cpu(),
                            "this network")
    # a text checkpoint is not a GAN checkpoint
    with pytest.raises(MXGenError, match="not a DCGAN"):
        from mxgen.train.text import TextTrainConfig, train_text
        train_text(TextTrainConfig(data="stdlib", out=str(tmp_path / "t"), dry_run=True,
                                   num_hidden=16, num_embed=8, seq_len=10, batch_size=4,
                                   progress=False), log=_quiet)
        load(str(tmp_path / "t"), family="dcgan")


def test_non_finite_loss_stops_without_saving_it(tmp_path, monkeypatch):
    """A discriminator loss that turns NaN: training stops at the next log line
    with an error naming the range, and the last checkpoint stays finite."""
    import mxgen.train.gan as gan_mod
    real_loss = gan_mod.gluon.loss.SigmoidBinaryCrossEntropyLoss
    calls = {"n": 0}

    real_call = real_loss.__call__

    def poisoned_call(self, pred, label):
        calls["n"] += 1
        out = real_call(self, pred, label)
        # 3 loss calls per iteration; from iteration 8 on, NaN
        return out * mx.nd.sqrt(mx.nd.ones_like(out) * (-1 if calls["n"] > 21 else 1))

    monkeypatch.setattr(real_loss, "__call__", poisoned_call)
    with pytest.raises(MXGenError, match=r"non-finite DCGAN loss in steps 7-10"):
        train_gan(_cfg("shapes", tmp_path, epochs=2, max_images=192, batch_size=32), log=_quiet)
    # epoch 1 (6 iterations) was checkpointed before the NaN and is finite
    saved = resolve(str(tmp_path), "latest")
    assert saved.endswith("ckpt-00000006")
    for arrays in _weights(tmp_path).values():
        for value in arrays.values():
            assert np.isfinite(value.asnumpy()).all()


def test_multi_device_run_resumes_exactly(tmp_path):
    """--ctx cpu:0,1: split_and_load, a 'device' kvstore summing gradients,
    both trainers' states saved and restored: interrupted twice == straight."""
    kw = dict(ctx="cpu:0,1", epochs=2, max_images=128, ngf=8, ndf=8, fid_samples=64,
              save_every=3)
    straight = train_gan(_cfg("shapes", tmp_path / "a", **kw), log=_quiet)
    train_gan(_cfg("shapes", tmp_path / "b", max_steps=3, **kw), log=_quiet)
    train_gan(_cfg("shapes", tmp_path / "b", max_steps=2, resume=True, **kw), log=_quiet)
    resumed = train_gan(_cfg("shapes", tmp_path / "b", resume=True, **kw), log=_quiet)
    assert straight["step"] == resumed["step"] == 8
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for name in a:
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key].asnumpy(), b[name][key].asnumpy(),
                                          err_msg=key)
    # both devices hold the same weights after training (BatchNorm's running
    # statistics are per device: each sees its half of the batch)
    for p in straight["generator"].collect_params().values():
        if p.grad_req != "null":
            np.testing.assert_array_equal(p.data(mx.cpu(0)).asnumpy(),
                                          p.data(mx.cpu(1)).asnumpy())


def _fresh_step(skip, size=32):
    from mxgen.models import DCGANConfig
    from mxgen.train.gan import build_gan_step
    mx.random.seed(11)
    return build_gan_step(DCGANConfig(image_size=size, ngf=8, ndf=8), 2e-4, 0.5, [mx.cpu()],
                          skip_d_weight_grads=skip)


def _values(block, trained_only=False):
    return {k: p.data().asnumpy().copy() for k, p in block._collect_params_with_prefix().items()
            if not trained_only or p.grad_req != "null"}


def test_generator_update_matches_the_straightforward_loop():
    """mxgen's step skips D's weight gradients in (2) and reuses (1)'s G graph;
    G must get exactly the gradient of the tutorial's loop written out here,
    and D's weights must not change during (2)."""
    from mxnet import autograd, gluon
    gen, disc, step = _fresh_step(skip=True)
    ref_gen, ref_disc, ref = _fresh_step(skip=True)     # same init; driven by hand below
    real = mx.nd.random.uniform(-1, 1, shape=(16, 3, 32, 32))
    d_after_1 = {}
    real_step_d = step.trainer_d.step

    def step_d_and_snapshot(batch):
        real_step_d(batch)
        d_after_1.update(_values(disc, trained_only=True))
    step.trainer_d.step = step_d_and_snapshot
    mx.random.seed(5)
    step(real)
    # the tutorial's loop, on the reference copy, with the same noise
    loss = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    mx.random.seed(5)
    z = mx.nd.random.normal(shape=(16, 100, 1, 1))
    with autograd.record():
        fake = ref_gen(z)
        err_d = loss(ref_disc(real), mx.nd.ones(16)) + loss(ref_disc(fake.detach()),
                                                           mx.nd.zeros(16))
    err_d.backward()
    ref.trainer_d.step(16)
    with autograd.record():
        err_g = loss(ref_disc(fake), mx.nd.ones(16))
    err_g.backward()
    g_grads = {k: p.grad().asnumpy().copy()
               for k, p in ref_gen._collect_params_with_prefix().items() if p.grad_req != "null"}
    ref.trainer_g.step(16)
    for k, p in gen._collect_params_with_prefix().items():
        if p.grad_req != "null":
            np.testing.assert_allclose(p.grad().asnumpy(), g_grads[k], rtol=1e-5, atol=1e-7,
                                       err_msg=k)
    for k, value in _values(gen).items():
        np.testing.assert_allclose(value, _values(ref_gen)[k], rtol=1e-5, atol=1e-7, err_msg=k)
    for k, value in _values(disc, trained_only=True).items():
        np.testing.assert_array_equal(value, d_after_1[k], err_msg=k)   # untouched by (2)
        np.testing.assert_allclose(value, _values(ref_disc)[k], rtol=1e-5, atol=1e-7,
                                   err_msg=k)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("recipe", ["dcgan", "stable"])
def test_every_configuration_trains(size, channels, recipe):
    """32/64 px x 1/3 channels, hybridized: a few steps on any CPU, finite
    losses, both networks change (1 channel used to fail inside oneDNN)."""
    from mxgen.models import DCGANConfig
    from mxgen.train.gan import build_gan_step
    mx.random.seed(0)
    options = dict(STABILISED, r1_every=3) if recipe == "stable" else {}
    beta1 = options.pop("beta1", 0.5)
    options.pop("holdout", None)
    gen, disc, step = build_gan_step(DCGANConfig(image_size=size, ngf=8, ndf=8, nc=channels),
                                     2e-4, beta1, [mx.cpu()], **options)
    before = (_values(gen), _values(disc))
    real = mx.nd.random.uniform(-1, 1, shape=(8, channels, size, size))
    for i in range(3):                        # the third applies R1
        sums = step(real, i + 1).asnumpy()
    assert np.isfinite(sums).all()
    for net, old in zip((gen, disc), before):
        changed = [k for k, v in _values(net).items() if not np.array_equal(v, old[k])]
        assert changed, "no parameter of %s changed" % net.name
    assert gen(mx.nd.zeros((2, 100, 1, 1))).shape == (2, channels, size, size)


def test_skipping_d_weight_grads_gives_each_parameter_its_request_back():
    """G's update runs through D with D's weight gradients off; afterwards a
    parameter that accumulated (grad_req 'add') accumulates again."""
    from mxnet import gluon
    from mxgen.train.gan import _weight_grads
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    net.weight.grad_req, net.bias.grad_req = "add", "write"
    params = list(net.collect_params().values())
    with _weight_grads(params, "null"):
        assert [p.grad_req for p in params] == ["null", "null"]
    assert (net.weight.grad_req, net.bias.grad_req) == ("add", "write")


# ---- the stabilisers: R1, spectral norm in training, EMA, recipes, held-out FD ----------

def _input_grads(disc, x):
    """dD/dx of every image (training mode, as in the update)."""
    x = x.copy()
    x.attach_grad()
    with mx.autograd.record():
        out = disc(x)
    out.backward()
    return x.grad.asnumpy().astype(np.float64)


def test_r1_penalty_and_its_gradient_match_finite_differences():
    """The penalty is gamma * k / 2 * sum |dD/dx|^2 (dD/dx checked against a
    central difference in the input), and the weight gradient mxgen adds
    (itself a difference of weight gradients, as MXNet has no second
    derivative of a convolution) against a central difference of that
    penalty in single weights."""
    from mxgen.models import DCGANConfig
    from mxgen.nn.spectral import power_iteration
    from mxgen.train.gan import _weight_grads, build_gan_step
    mx.random.seed(4)
    gamma, every = 2.0, 4
    _, disc, step = build_gan_step(DCGANConfig(image_size=32, ngf=8, ndf=8, nc=1), 2e-4, 0.5,
                                   [mx.cpu()], spectral_norm=True, d_norm="none", r1=gamma,
                                   r1_every=every)
    # in float64, where central differences of small steps are accurate
    disc.cast("float64")
    for _ in range(500):                 # a converged u: sigma's v is then stationary
        power_iteration(step.spectral, [mx.cpu()])
    x = mx.nd.random.uniform(-1, 1, shape=(4, 1, 32, 32), dtype="float64")
    g = _input_grads(disc, x)
    direction = np.random.RandomState(0).normal(size=x.shape)

    def along(h):
        with mx.autograd.train_mode():
            sums = [float(disc(x + mx.nd.array(s * h * direction, dtype="float64")).sum()
                          .asscalar()) for s in (1, -1)]
        return (sums[0] - sums[1]) / (2 * h)
    # a difference can straddle a LeakyReLU kink (they lie close to many
    # inputs): the median of three step sizes is compared
    numeric = np.median([along(h) for h in (1e-4, 1e-5, 1e-6)])
    assert numeric == pytest.approx((g * direction).sum(), rel=2e-2)

    params = step.disc_params
    with _weight_grads(params, "add"):
        penalty = float(mx.nd.add_n(*step._r1_gradients([x])).asscalar())
        grads = {p.name: p.grad().asnumpy().copy() for p in params if p.grad_req != "null"}
    assert penalty == pytest.approx(gamma * every / 2 * (g ** 2).sum(), rel=1e-4)

    def penalty_at(param, index, value):
        data = param.data().asnumpy()
        data[index] = value
        param.set_data(mx.nd.array(data, dtype="float64"))
        return gamma * every / 2 * (_input_grads(disc, x) ** 2).sum()

    checked, rng = 0, np.random.RandomState(1)
    for p in params:
        if p.grad_req == "null" or not p.name.endswith("weight"):
            continue
        for _ in range(2):
            index = tuple(rng.randint(0, n) for n in p.shape)
            w = float(p.data().asnumpy()[index])
            numeric = np.median([(penalty_at(p, index, w + h) - penalty_at(p, index, w - h))
                                 / (2 * h) for h in (1e-5, 1e-6, 1e-7)])
            penalty_at(p, index, w)
            assert grads[p.name][index] == pytest.approx(numeric, rel=2e-2, abs=1e-4), \
                (p.name, index)
            checked += 1
    assert checked == 8


def _all_weights(run_dir):
    ckpt = resolve(str(run_dir), "latest")
    return {name: mx.nd.load(os.path.join(ckpt, name)) for name in
            ("generator.params", "generator_ema.params", "discriminator.params")}


STABILISED = dict(loss="hinge", spectral_norm=True, d_norm="none", ema=0.9, r1=1.0,
                  r1_every=2, lr_d=3e-4, lr_g=1e-4, beta1=0.0, beta2=0.9, holdout=40)


def test_resume_is_bit_exact_with_every_stabiliser(tmp_path):
    """Hinge loss, spectral norm (its u in the checkpoint), EMA (its weights
    in the checkpoint), lazy R1 (on the run's step count), two learning
    rates, a held-out slice: interrupted at an odd step == straight."""
    kw = dict(epochs=2, max_images=200, **STABILISED)
    straight = train_gan(_cfg("shapes", tmp_path / "a", **kw), log=_quiet)
    train_gan(_cfg("shapes", tmp_path / "b", max_steps=3, **kw), log=_quiet)
    resumed = train_gan(_cfg("shapes", tmp_path / "b", resume=True, **kw), log=_quiet)
    assert straight["step"] == resumed["step"] == 10         # 160 training images, 5 batches
    a, b = _all_weights(tmp_path / "a"), _all_weights(tmp_path / "b")
    assert any(k.endswith("sn_u") for k in a["discriminator.params"])
    for name in a:
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key].asnumpy(), b[name][key].asnumpy(),
                                          err_msg=key)
    assert not np.array_equal(a["generator.params"]["body.0.weight"].asnumpy(),
                              a["generator_ema.params"]["body.0.weight"].asnumpy())
    records = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
    assert any(r.get("r1", 0) > 0 for r in records if r["kind"] == "train")
    assert all(r.get("ema") for r in records if r["kind"] == "eval" and r["step"])
    # sampling and loading use the average by default, the trained weights on request
    assert load(str(tmp_path / "a")).weights == "ema"
    trained = load(str(tmp_path / "a"), ema=False)
    assert trained.weights == "trained"
    z = mx.nd.random.normal(shape=(2, 100, 1, 1))
    with mx.autograd.predict_mode():
        np.testing.assert_allclose(load(str(tmp_path / "a"), prefer="latest").model(z).asnumpy(),
                                   straight["sampler"](z).asnumpy(), rtol=1e-5, atol=1e-6)
    train_gan(_cfg("shapes", tmp_path / "c", max_steps=1, max_images=64), log=_quiet)
    with pytest.raises(MXGenError, match="no moving average"):
        load(str(tmp_path / "c"), ema=True)


def test_spectral_norm_holds_during_training():
    """After a few updates every D layer computes with a weight whose largest
    singular value is ~1 (NumPy's SVD), one power iteration
    per update."""
    from mxgen.models import DCGANConfig
    from mxgen.train.gan import build_gan_step
    mx.random.seed(0)
    _, disc, step = build_gan_step(DCGANConfig(image_size=32, ngf=8, ndf=8), 4e-4, 0.0,
                                   [mx.cpu()], spectral_norm=True, loss="hinge")
    real = mx.nd.random.uniform(-1, 1, shape=(8, 3, 32, 32))
    for i in range(30):
        step(real, i + 1)
    assert len(step.spectral) == 4
    for layer in step.spectral:
        w = layer.normalised_weight().asnumpy()
        top = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
        # from below: sigma is under-estimated while u converges, slowly at a
        # random start, whose top singular values are nearly equal
        assert 0.999 < top < 1.1, (layer.name, top)


def test_recipes_fill_what_the_user_left_unset():
    stable = GANTrainConfig(recipe="stable")
    assert (stable.loss, stable.spectral_norm, stable.d_norm, stable.ema, stable.lr_d,
            stable.lr_g, stable.beta1, stable.beta2) == ("hinge", True, "batch", 0.999, 4e-4,
                                                         4e-4, 0.5, 0.99)
    mixed = GANTrainConfig(recipe="stable", loss="nonsat", lr=1e-3, lr_g=5e-4, ema=0.0)
    assert (mixed.loss, mixed.lr_d, mixed.lr_g, mixed.ema, mixed.spectral_norm) == \
        ("nonsat", 1e-3, 5e-4, 0.0, True)
    assert GANTrainConfig().recipe == "stable"
    dcgan = GANTrainConfig(recipe="dcgan")
    assert (dcgan.loss, dcgan.spectral_norm, dcgan.ema, dcgan.r1, dcgan.lr_d, dcgan.beta1) == \
        ("bce", False, 0.0, 0.0, 2e-4, 0.5)
    with pytest.raises(MXGenError, match="--recipe must be one of dcgan, stable"):
        GANTrainConfig(recipe="wgan")
    with pytest.raises(MXGenError, match="--r1 needs --d-norm none"):
        GANTrainConfig(r1=10.0).validate()


def test_frechet_distance_uses_held_out_images(tmp_path):
    """The held-out images are never trained on, and they are what the
    generated images are compared with."""
    from mxgen.train.gan import _split_holdout
    images = np.arange(100)[:, None, None, None] * np.ones((1, 1, 2, 2), dtype=np.int64)
    train, held = _split_holdout(images, 500, seed=3)
    assert len(held) == 20 and len(train) == 80                  # at most a fifth
    assert not set(train[:, 0, 0, 0]) & set(held[:, 0, 0, 0])
    assert len(_split_holdout(images, 0, seed=3)[1]) == 0
    lines = []
    train_gan(_cfg("shapes", tmp_path, max_images=160, holdout=32, max_steps=1, epochs=1),
              log=lines.append)
    assert any("(32 held out), 4 batches of 32" in l and "vs 32 held-out images" in l
               for l in lines), lines


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stable_recipe_does_not_diverge_on_the_embedded_set(tmp_path, seed):
    """--recipe stable on the embedded shapes, three seeds: losses stay finite
    and the Frechet distance against held-out images falls well below its
    starting value."""
    result = train_gan(_cfg("shapes", tmp_path, recipe="stable", max_images=1024, ngf=32,
                            ndf=32, holdout=128, fid_samples=128, epochs=5, seed=seed),
                       log=_quiet)
    records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    fds = [r["frechet_distance"] for r in records if r["kind"] == "eval"]
    train = [r for r in records if r["kind"] == "train"]
    assert result["step"] == 5 * (896 // 32)
    assert all(np.isfinite([r["loss_d"], r["loss_g"]]).all() for r in train)
    assert fds[-1] < 0.8 * fds[0], fds


def test_recipe_parts_can_be_turned_off_on_the_command_line():
    import argparse
    from mxgen.cli.common import add_config_args, config_from_args
    parser = add_config_args(argparse.ArgumentParser(), GANTrainConfig)
    cfg, explicit = config_from_args(GANTrainConfig, parser.parse_args(
        ["--recipe", "stable", "--no-spectral-norm", "--ema", "0"]))
    assert (cfg.spectral_norm, cfg.ema, cfg.loss) == (False, 0.0, "hinge")
    assert explicit == {"recipe", "spectral_norm", "ema"}
    cfg, _ = config_from_args(GANTrainConfig, parser.parse_args(["--recipe", "dcgan",
                                                                 "--spectral-norm"]))
    assert (cfg.spectral_norm, cfg.loss) == (True, "bce")
