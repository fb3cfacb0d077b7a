import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.errors import MXGenError
from mxgen.models import CharRNN
from mxgen.models import load
from mxgen.train.lm import LMLoss
from mxgen.train.text import TextTrainConfig, train_text
from mxgen.utils.checkpoint import resolve


def _cfg(path, out, **kw):
    base = dict(data=path, out=str(out), max_chars=24000, num_embed=16, num_hidden=32,
                num_layers=2, seq_len=20, batch_size=8, epochs=2, lr=5e-3, dropout=0.3,
                progress=False, log_interval=5, seed=3)
    base.update(kw)
    return TextTrainConfig(**base)


def _params(run_dir, prefer="latest"):
    model = load(run_dir, prefer=prefer).model
    # structural names (embedding.weight, layers.0.weights, ...), not prefixes
    return {k: v.data().asnumpy() for k, v in model._collect_params_with_prefix().items()}


def _quiet(*_):
    pass


def test_training_lowers_validation_loss_and_keeps_best(nietzsche_path, tmp_path):
    result = train_text(_cfg(nietzsche_path, tmp_path, max_chars=60000, epochs=3,
                             dropout=0.0), log=_quiet)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    vals = [r["val_bpc"] for r in records if r["kind"] == "val"]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.3
    assert result["best_val_bpc"] == min(vals)
    assert os.path.isfile(tmp_path / "loss.png")
    assert resolve(str(tmp_path), "best")
    assert any(r["kind"] == "train" and r["tokens_per_s"] > 0 for r in records)


def test_resume_is_bit_exact(nietzsche_path, tmp_path):
    """Stop mid-epoch, resume, and end with the uninterrupted run's parameters."""
    straight = tmp_path / "straight"
    train_text(_cfg(nietzsche_path, straight), log=_quiet)
    broken = tmp_path / "broken"
    first = train_text(_cfg(nietzsche_path, broken, max_steps=37), log=_quiet)
    assert first["stopped"] == "max_steps" and first["step"] == 37
    # a second interruption, then finish
    train_text(_cfg(nietzsche_path, broken, max_steps=40, resume=True), log=_quiet)
    resumed = train_text(_cfg(nietzsche_path, broken, resume=True), log=_quiet)
    assert resumed["stopped"] is None
    a, b = _params(str(straight)), _params(str(broken))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_two_devices_give_single_device_gradients(nietzsche, seed):
    from mxgen.data.batchify import BPTTBatches
    from mxgen.data.vocab import Vocab
    vocab = Vocab.from_text(nietzsche)
    data, target = BPTTBatches(vocab.encode(nietzsche[:8000]), 8, 25)[2]
    ctxs = [mx.cpu(0), mx.cpu(1)]
    model = CharRNN(len(vocab), 16, 32, 2, dropout=0.0)
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    loss_block = LMLoss(model)
    loss_block.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": 0.1},
                            kvstore="device", update_on_kvstore=False)
    datas = gluon.utils.split_and_load(data, ctxs, batch_axis=1)
    targets = gluon.utils.split_and_load(target, ctxs, batch_axis=1)
    with autograd.record():
        losses = [loss_block(d, t, *model.begin_state(4, ctx=c))[0]
                  for d, t, c in zip(datas, targets, ctxs)]
    autograd.backward(losses)
    trainer.allreduce_grads()
    multi = {k: p.grad(ctxs[0]).asnumpy() for k, p in model.collect_params().items()}

    single = CharRNN(len(vocab), 16, 32, 2, dropout=0.0)
    single.initialize(ctx=mx.cpu())
    for (_, src), (_, dst) in zip(sorted(model.collect_params().items()),
                                  sorted(single.collect_params().items())):
        dst.set_data(src.data(ctxs[0]))
    single_loss = LMLoss(single)
    with autograd.record():
        loss, _ = single_loss(mx.nd.array(data), mx.nd.array(target), *single.begin_state(8))
    loss.backward()
    for (k, g), (_, p) in zip(sorted(multi.items()), sorted(single.collect_params().items())):
        np.testing.assert_allclose(g, p.grad().asnumpy(), rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("rnn_impl", ["fused", "native"])
def test_training_on_two_devices_matches_one(nietzsche_path, tmp_path, rnn_impl):
    # Kernel and precision pinned: left to auto, each run measures for its own
    # per-device batch and may pick bfloat16 in one and float32 in the other.
    kw = dict(epochs=1, max_steps=6, dropout=0.0, val_fraction=0.2, rnn_impl=rnn_impl,
              dtype="float32")
    one = train_text(_cfg(nietzsche_path, tmp_path / "one", **kw), log=_quiet)
    two = train_text(_cfg(nietzsche_path, tmp_path / "two", ctx="cpu:0,1", **kw), log=_quiet)
    assert one["step"] == two["step"] == 6
    a, b = _params(str(tmp_path / "one")), _params(str(tmp_path / "two"))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_two_device_run_with_dropout_resumes_exactly(nietzsche_path, tmp_path):
    """--ctx cpu:0,1 with dropout on: each device draws its own masks from the
    per-step seed; interrupted and resumed, the run ends bit-identical."""
    kw = dict(ctx="cpu:0,1", dropout=0.3, epochs=1, max_chars=12000, save_every=7)
    straight = train_text(_cfg(nietzsche_path, tmp_path / "a", **kw), log=_quiet)
    train_text(_cfg(nietzsche_path, tmp_path / "b", max_steps=9, **kw), log=_quiet)
    resumed = train_text(_cfg(nietzsche_path, tmp_path / "b", resume=True, **kw), log=_quiet)
    assert straight["step"] == resumed["step"] > 9
    a, b = _params(str(tmp_path / "a")), _params(str(tmp_path / "b"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # dropout really applied: the same run without it ends elsewhere
    plain = train_text(_cfg(nietzsche_path, tmp_path / "c", **dict(kw, dropout=0.0)),
                       log=_quiet)
    c = _params(plain["run_dir"])
    assert any(not np.array_equal(a[key], c[key]) for key in a)


def test_extending_a_cosine_run_says_the_rates_change(nietzsche_path, tmp_path):
    kw = dict(lr_schedule="cosine", epochs=1, max_chars=8000)
    train_text(_cfg(nietzsche_path, tmp_path, **kw), log=_quiet)
    lines = []
    train_text(_cfg(nietzsche_path, tmp_path, resume=True, **dict(kw, epochs=2)),
               log=lines.append, explicit={"epochs"})
    assert any("resuming with epochs=2 (the run had 1)" in line for line in lines), lines
    assert any("cosine schedule now decays over" in line for line in lines), lines
    # the same resume without --epochs keeps the run's budget: nothing to train
    with pytest.raises(MXGenError, match="nothing to train"):
        train_text(_cfg(nietzsche_path, tmp_path, resume=True, **kw), log=_quiet)


def test_metrics_of_steps_after_the_checkpoint_are_dropped_on_resume(nietzsche_path, tmp_path):
    """A run killed after logging past its last checkpoint: on resume those
    records go, so no step is logged twice."""
    kw = dict(epochs=1, max_chars=12000, save_every=10, log_interval=2)
    train_text(_cfg(nietzsche_path, tmp_path, max_steps=10, **kw), log=_quiet)
    with open(tmp_path / "metrics.jsonl", "a") as f:      # what a killed run logged later
        f.write(json.dumps({"kind": "train", "step": 12}) + "\n")
    train_text(_cfg(nietzsche_path, tmp_path, resume=True, **kw), log=_quiet)
    steps = [r["step"] for r in map(json.loads, open(tmp_path / "metrics.jsonl"))
             if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and 12 in steps


def test_non_finite_loss_skips_updates_then_stops(nietzsche_path, tmp_path, monkeypatch):
    """A loss that turns NaN from step 4 on: updates are skipped, training stops
    after max_bad_steps, and the checkpoint on disk stays finite."""
    import mxgen.train.lm as text_mod
    real_forward = text_mod.LMLoss.hybrid_forward
    calls = {"n": 0}

    def poisoned(self, F, *args):
        loss, states = real_forward(self, F, *args)
        return loss * F.sqrt(F.ones_like(loss) * self.poison), states

    class Poisoned(text_mod.LMLoss):
        poison = 1.0
        hybrid_forward = poisoned

        def __call__(self, *args):
            if mx.autograd.is_training():
                calls["n"] += 1
                if calls["n"] == 4:            # rebuild the graph with a NaN factor
                    Poisoned.poison = -1.0
                    self._clear_cached_op()
            return super().__call__(*args)

    monkeypatch.setattr(text_mod, "LMLoss", Poisoned)
    with pytest.raises(MXGenError, match="3 steps in a row had a non-finite loss"):
        train_text(_cfg(nietzsche_path, tmp_path, save_every=2, max_bad_steps=3), log=_quiet)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records if r["kind"] == "bad_step"] == [4, 5, 6]
    saved = resolve(str(tmp_path), "latest")
    assert saved.endswith("ckpt-00000004")      # saved at step 4 with the step-3 weights
    for value in _params(str(tmp_path)).values():
        assert np.isfinite(value).all()


@pytest.mark.parametrize("kw,msg", [
    (dict(batch_size=3, ctx="cpu:0,1"), "does not divide evenly"),
    (dict(batch_size=1, ctx="cpu:0,1"), "smaller than the number of devices"),
    (dict(ctx="gpu:3"), "gpu:3 does not exist"),
    (dict(max_chars=100), "fewer than one batch needs"),
])
def test_bad_settings_are_clear_errors(nietzsche_path, tmp_path, kw, msg):
    with pytest.raises(MXGenError, match=msg):
        train_text(_cfg(nietzsche_path, tmp_path, **kw), log=_quiet)


def test_damaged_checkpoints_are_named(nietzsche_path, tmp_path):
    train_text(_cfg(nietzsche_path, tmp_path, epochs=1, max_steps=3), log=_quiet)
    ckpt = resolve(str(tmp_path), "latest")
    params = os.path.join(ckpt, "model.params")
    original = open(params, "rb").read()
    with open(params, "wb") as f:
        f.write(original[:len(original) // 2])
    with pytest.raises(MXGenError, match="model.params is truncated"):
        load(str(tmp_path))
    os.unlink(params)
    with pytest.raises(MXGenError, match="missing model.params"):
        load(str(tmp_path))
    with pytest.raises(MXGenError, match="not a checkpoint"):
        load(str(tmp_path / "checkpoints"))


def test_checkpoint_from_other_shape_or_vocab(nietzsche_path, tmp_path):
    train_text(_cfg(nietzsche_path, tmp_path, epochs=1, max_steps=2), log=_quiet)
    ckpt = resolve(str(tmp_path), "latest")
    # a model of another shape cannot take these parameters
    from mxgen.utils.checkpoint import load_parameters
    other = CharRNN(80, 16, 64, 2)
    with pytest.raises(MXGenError, match="do not fit this model"):
        load_parameters(other, os.path.join(ckpt, "model.params"), mx.cpu())
    # resuming on a corpus with characters the vocabulary lacks
    other_text = tmp_path / "other.txt"
    other_text.write_text("\u0416\u0436 " * 20000, encoding="utf-8")
    with pytest.raises(MXGenError, match="characters the checkpoint's vocabulary lacks"):
        train_text(_cfg(str(other_text), tmp_path, resume=True), log=_quiet,
                   explicit={"data"})
    # resuming with a different model shape
    with pytest.raises(MXGenError, match="trained with num_hidden=32, but 64 was given"):
        train_text(_cfg(nietzsche_path, tmp_path, resume=True, num_hidden=64), log=_quiet,
                   explicit={"num_hidden"})


def test_checkpoint_round_trip_is_exact(nietzsche_path, tmp_path):
    result = train_text(_cfg(nietzsche_path, tmp_path, epochs=1, max_steps=5), log=_quiet)
    live = {k: v.data().asnumpy() for k, v in result["model"]._collect_params_with_prefix().items()}
    loaded = _params(str(tmp_path))
    assert live.keys() == loaded.keys()
    for key in live:
        np.testing.assert_array_equal(live[key], loaded[key], err_msg=key)
    # and the loaded model computes exactly what the trained one does
    loaded = load(str(tmp_path), prefer="latest")
    model, vocab = loaded.model, loaded.vocab
    # in the precision and kernel training chose (auto may pick bfloat16 on this CPU;
    # a checkpoint itself is float32 and loads into a float32 model)
    trained = result["model"]
    model.set_rnn_impl(trained.rnn_impl)
    assert model.set_dtype(trained.dtype, impl_fixed=True) == trained.dtype
    data = mx.nd.array(vocab.encode("The free spirit")[:, None])
    with mx.autograd.predict_mode():
        a = result["model"](data, *result["model"].begin_state(1))[0].asnumpy()
        b = model(data, *model.begin_state(1))[0].asnumpy()
    np.testing.assert_array_equal(a, b)


def test_global_norm_clipping_bounds_the_update(nietzsche_path, tmp_path):
    """With plain SGD (lr 1) one step moves the parameters by exactly the clipped
    gradient: its global norm equals --clip when the raw gradient is larger."""
    kw = dict(epochs=1, max_steps=1, optimizer="sgd", dropout=0.0, val_fraction=0.2)
    train_text(_cfg(nietzsche_path, tmp_path / "init", lr=0.0, **kw), log=_quiet)
    train_text(_cfg(nietzsche_path, tmp_path / "step", lr=1.0, clip=0.01, **kw), log=_quiet)
    before, after = _params(str(tmp_path / "init")), _params(str(tmp_path / "step"))
    moved = np.sqrt(sum(((after[k].astype(np.float64) - before[k]) ** 2).sum() for k in before))
    assert moved == pytest.approx(0.01, rel=1e-3)
    # ... and it was clipped: unclipped, the same step moves much further
    train_text(_cfg(nietzsche_path, tmp_path / "free", lr=1.0, clip=0, **kw), log=_quiet)
    free = _params(str(tmp_path / "free"))
    assert np.sqrt(sum(((free[k].astype(np.float64) - before[k]) ** 2).sum()
                       for k in before)) > 0.1


def test_sum_of_squares_over_every_array_and_dtype():
    """The norm's sum: BLAS dots for dense arrays (any shapes), float16
    summed in float32, sparse through multi_sum_sq; one array or several;
    float64 reference."""
    from mxgen.train.common import sum_of_squares
    rng = np.random.RandomState(4)
    arrays = [rng.normal(size=s) * 3 for s in ((300, 7), (5,), (2, 3, 4), (1,))]
    want = sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays)
    got = sum_of_squares([mx.nd.array(a) for a in arrays])
    assert got.shape == (1,) and got.asscalar() == pytest.approx(want, rel=1e-5)
    one = sum_of_squares([mx.nd.array(arrays[0])]).asscalar()
    assert one == pytest.approx(float((arrays[0] ** 2).sum()), rel=1e-5)
    # float16 values (loss-scaled gradients) whose squares and sum (~7e6)
    # overflow float16: squared or summed in float16 they read as an
    # overflow, a false loss-scale skip
    half = [mx.nd.array(a * 25, dtype="float16") for a in arrays]
    want_half = sum(float((h.asnumpy().astype(np.float64) ** 2).sum()) for h in half)
    assert want_half > 65504 * 50 and max(float(abs(h).max().asscalar()) for h in half) > 256
    got_half = sum_of_squares(half)
    assert got_half.dtype == np.float32
    assert got_half.asscalar() == pytest.approx(want_half, rel=1e-3)
    sparse = [mx.nd.array(arrays[0]).tostype("row_sparse"), mx.nd.array(arrays[1])]
    want_sparse = float((arrays[0] ** 2).sum() + (arrays[1] ** 2).sum())
    assert sum_of_squares(sparse).asscalar() == pytest.approx(want_sparse, rel=1e-5)


def test_resume_keeps_the_runs_epoch_budget_unless_given(nietzsche_path, tmp_path):
    """Resuming without --epochs keeps the run's own budget (it used to fall
    back to the default and stop early); giving it changes it and says so."""
    train_text(_cfg(nietzsche_path, tmp_path, epochs=3, max_steps=4), log=_quiet)
    default = TextTrainConfig.__dataclass_fields__["epochs"].default
    resumed = train_text(_cfg(nietzsche_path, tmp_path, epochs=default, max_steps=2,
                              resume=True), log=_quiet)
    assert resumed["config"].epochs == 3
    lines = []
    extended = train_text(_cfg(nietzsche_path, tmp_path, epochs=5, max_steps=2, resume=True),
                          log=lines.append, explicit=("epochs", "max_steps"))
    assert extended["config"].epochs == 5
    assert any("resuming with epochs=5 (the run had 3)" in line for line in lines), lines


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(nietzsche_path, tmp_path,
                                                              monkeypatch):
    """A write that fails half-way (ENOSPC) stops the run with a clear error;
    the checkpoint before it stays pointed to and the run resumes from it."""
    import errno
    kw = dict(epochs=1, max_chars=12000, save_every=5)
    real_save, calls = mx.nd.save, {"n": 0}

    def failing_save(path, data):
        calls["n"] += 1
        if calls["n"] == 5:                      # inside the second checkpoint
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, data)

    monkeypatch.setattr(mx.nd, "save", failing_save)
    with pytest.raises(MXGenError, match="could not write the checkpoint of step 10.*No space"):
        train_text(_cfg(nietzsche_path, tmp_path, **kw), log=_quiet)
    monkeypatch.undo()
    latest = resolve(str(tmp_path), "latest")
    assert latest.endswith("ckpt-00000005")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt-00000005"]
    resumed = train_text(_cfg(nietzsche_path, tmp_path, resume=True, **kw), log=_quiet)
    assert resumed["stopped"] is None and resumed["step"] > 10
