import json
import os

import mxnet as mx
import numpy as np
import pytest

from mxgen.errors import MXGenError
from mxgen.train.gan import GANTrainConfig, load_gan, train_gan
from mxgen.utils.checkpoint import resolve

def _cfg(data, out, **kw):
    base = dict(data=data, out=str(out), image_size=32, ngf=16, ndf=16, batch_size=32,
                epochs=3, progress=False, fid_samples=256, max_images=512, num_workers=0,
                log_interval=5, seed=2)
    base.update(kw)
    return GANTrainConfig(**base)


def _quiet(*_):
    pass


def _weights(run_dir):
    ckpt = resolve(str(run_dir), "latest")
    return {name: mx.nd.load(os.path.join(ckpt, name)) for name in
            ("generator.params", "discriminator.params")}


def test_training_lowers_frechet_distance_on_real_images(emoji_dir, tmp_path):
    result = train_gan(_cfg(emoji_dir, tmp_path), log=_quiet)
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
    gen, config, _ = load_gan(str(tmp_path / "b"))
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
    from mxgen.train.common import load_parameters
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
        load_gan(str(tmp_path / "t"))


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
    with pytest.raises(MXGenError, match=r"non-finite GAN loss in steps 7-10"):
        train_gan(_cfg("shapes", tmp_path, epochs=2, max_images=192, batch_size=32), log=_quiet)
    # epoch 1 (6 iterations) was checkpointed before the NaN and is finite
    saved = resolve(str(tmp_path), "latest")
    assert saved.endswith("ckpt-00000006")
    for arrays in _weights(tmp_path).values():
        for value in arrays.values():
            assert np.isfinite(value.asnumpy()).all()


def test_resuming_a_finished_run_says_so(cli, tmp_path):
    """A finished run resumed with no more epochs to go: a clear line and exit
    0, not a traceback (it used to end in UnboundLocalError)."""
    out = tmp_path / "run"
    args = ("train-gan", "--data", "shapes", "--image-size", 32, "--epochs", 1,
            "--max-images", 64, "--batch-size", 32, "--fid-samples", 64, "--out", out,
            "--no-progress")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    again = cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert "nothing to train: the run has finished 1 of 1 epochs" in again.stdout
