"""Training on independent samples in length buckets (train-text --samples)."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.data.bucket import BucketIterator, load_samples
from mxgen.data.vocab import Vocab
from mxgen.distributed import Cluster
from mxgen.errors import MXGenError
from mxgen.generation import generate
from mxgen.models import CharRNN
from mxgen.models import load
from mxgen.train.lm import LMStep
from mxgen.train.text import TextTrainConfig, train_text

WORDS = ["a", "to", "cat", "bird", "horse", "giraffe", "hippopotamus", "be", "dog", "zebra"]


def _quiet(*_):
    pass


def _model(vocab, ctxs, seed=5):
    mx.random.seed(seed)
    model = CharRNN(len(vocab), 8, 16, 2, dropout=0.0, mode="lstm")
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    return model


def _sgd_step(ctxs, batch, seed=5):
    """One masked LMStep with plain SGD (lr 1): the parameter change IS minus
    the update's gradient."""
    vocab = Vocab.from_text("".join(WORDS), eos=Vocab.EOS)
    model = _model(vocab, ctxs, seed)
    trainer = Cluster(None, ctxs).trainer(model.collect_params(), "sgd", {"learning_rate": 1.0})
    step = LMStep(model, trainer, ctxs, clip=0, static_shape=True)
    before = {k: p.data(ctxs[0]).asnumpy() for k, p in
              model._collect_params_with_prefix().items()}
    data, target, mask = batch
    losses, _, _ = step(data, target, _fresh(model, ctxs, data.shape[1]), mask, mask.sum())
    loss = sum(float(x.asscalar()) for x in losses)
    after = {k: p.data(ctxs[0]).asnumpy() for k, p in model._collect_params_with_prefix().items()}
    return model, vocab, loss, {k: before[k] - after[k] for k in before}, before


def _fresh(model, ctxs, columns):
    return [model.begin_state(columns // len(ctxs), ctx=c) for c in ctxs]


def _batch(vocab, samples, batch_size):
    encoded = [vocab.encode(s) for s in samples]
    it = BucketIterator(encoded, vocab.eos_id, batch_size, num_buckets=1, shuffle=False,
                        pad_last=True)
    return next(iter(it))


def test_masked_loss_and_divisor_equal_an_unpadded_per_sample_reference():
    vocab = Vocab.from_text("".join(WORDS), eos=Vocab.EOS)
    samples = ["a", "cat", "giraffe", "hippopotamus", "zebra"]       # padded to 13, +3 empty
    batch = _batch(vocab, samples, 8)
    assert batch[0].shape == (13, 8) and batch[2].sum() == sum(len(s) + 1 for s in samples)
    model, _, loss, update, before = _sgd_step([mx.cpu()], batch)
    # reference: each sample alone, no padding, summed nll, gradient / real tokens
    ref = _model(vocab, [mx.cpu()])
    for key, p in ref._collect_params_with_prefix().items():
        np.testing.assert_array_equal(p.data().asnumpy(), before[key])   # same start
    params = ref._collect_params_with_prefix()
    for p in params.values():
        p.grad_req = "add"
        p.zero_grad()
    ref_loss, tokens = 0.0, 0
    for s in samples:
        ids = vocab.encode(s)
        data = mx.nd.array(np.concatenate([[vocab.eos_id], ids])[:, None])
        target = mx.nd.array(np.concatenate([ids, [vocab.eos_id]])[:, None])
        with autograd.record():
            logits, _ = ref(data, *ref.begin_state(1))
            nll = -mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), target, axis=-1).sum()
        nll.backward()
        ref_loss += float(nll.asscalar())
        tokens += len(s) + 1
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for key, p in params.items():
        np.testing.assert_allclose(update[key], p.grad().asnumpy() / tokens, rtol=1e-4,
                                   atol=1e-7, err_msg=key)


def test_two_devices_give_the_one_device_update():
    vocab = Vocab.from_text("".join(WORDS), eos=Vocab.EOS)
    batch = _batch(vocab, WORDS[:7], 8)
    _, _, loss1, one, _ = _sgd_step([mx.cpu()], batch)
    _, _, loss2, two, _ = _sgd_step([mx.cpu(0), mx.cpu(1)], batch)
    assert loss1 == pytest.approx(loss2, rel=1e-5)
    for key in one:
        np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-7, err_msg=key)


def test_one_graph_per_bucket_built_once_over_an_epoch(nietzsche_path):
    lines = load_samples(nietzsche_path, per="line")[:300]
    vocab = Vocab.from_text("".join(lines), eos=Vocab.EOS)
    it = BucketIterator([vocab.encode(s) for s in lines], vocab.eos_id, 16, num_buckets=4,
                        pad_last=True, seed=2)
    model = _model(vocab, [mx.cpu()])
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})
    step = LMStep(model, trainer, [mx.cpu()], clip=5.0, static_shape=True)
    first_op = {}
    for data, target, mask in it.epoch(0):
        assert data.shape[1] == 16                      # the last short batches filled up
        step(data, target, _fresh(model, [mx.cpu()], 16), mask, mask.sum())
        block = step.graphs[(data.shape[0], True)]
        first_op.setdefault(data.shape[0], block._cached_op)
        assert block._cached_op is first_op[data.shape[0]]     # never rebuilt
    assert len(step.graphs) <= len(it.bucket_keys) == 4
    assert {length for length, _ in step.graphs} == {key for key, _ in it._shapes()}


def _names_file(tmp_path, n=400):
    rng = np.random.RandomState(0)
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS[i] for i in rng.randint(0, len(WORDS), n)) + "\n")
    return str(path)


def _cfg(data, out, **kw):
    base = dict(data=data, out=str(out), samples="lines", buckets=4, max_len=32, seq_len=10,
                num_embed=16,
                num_hidden=48, num_layers=1, batch_size=16, epochs=8, lr=1e-2, dropout=0.0,
                progress=False, log_interval=10, seed=3, lr_schedule="constant",
                rnn_impl="fused", dropout_impl="mxnet")
    base.update(kw)
    return TextTrainConfig(**base)


def test_training_on_samples_learns_to_end_them(tmp_path):
    data = _names_file(tmp_path)
    result = train_text(_cfg(data, tmp_path / "run"), log=_quiet)
    assert result["graphs"] <= 4
    assert result["best_val_bpc"] < 1.5                 # the ten words are easy
    loaded = load(str(tmp_path / "run"))
    model, vocab = loaded.model, loaded.vocab
    texts = generate(model, vocab, "", 40, temperature=0.5, num_samples=20, seed=1,
                     stop_at_eos=True)
    ended = [t for t in texts if len(t) < 40]
    assert len(ended) >= 18, texts                      # they end by themselves
    assert all("\n" not in t for t in texts)
    assert sum(t in WORDS for t in texts) >= 15, texts


def test_generation_stops_at_the_end_mark_and_caps_at_length():
    """A decoder biased to one character: with the end mark's bias high every
    sample ends at once; with another's, none ends and the cap applies."""
    vocab = Vocab.from_text("abc", eos=Vocab.EOS)
    model = _model(vocab, [mx.cpu()])
    bias = model.decoder.bias
    for favoured, expect in ((vocab.eos_id, ""), (vocab.index["b"], "b" * 12)):
        value = np.zeros(len(vocab), dtype=np.float32)
        value[favoured] = 50.0
        bias.set_data(mx.nd.array(value))
        for native in (False, True):
            texts = generate(model, vocab, "", 12, temperature=0, num_samples=3,
                             stop_at_eos=True, native=native)
            assert texts == [expect] * 3, (native, texts)
        assert generate(model, vocab, "ab", 12, temperature=0, stop_at_eos=True,
                        native=False) == ["ab" + expect]


def test_stop_at_eos_needs_a_sample_trained_vocabulary():
    vocab = Vocab.from_text("abc")
    model = _model(vocab, [mx.cpu()])
    with pytest.raises(MXGenError, match="needs a model trained on samples"):
        generate(model, vocab, "", 5, stop_at_eos=True)


def test_resume_on_samples_is_bit_exact(tmp_path):
    data = _names_file(tmp_path)
    kw = dict(epochs=2, dropout=0.3)
    train_text(_cfg(data, tmp_path / "a", **kw), log=_quiet)
    first = train_text(_cfg(data, tmp_path / "b", max_steps=23, **kw), log=_quiet)
    assert first["stopped"] == "max_steps"
    train_text(_cfg(data, tmp_path / "b", resume=True, **kw), log=_quiet)
    a, b = load(str(tmp_path / "a"), prefer="latest").model, \
        load(str(tmp_path / "b"), prefer="latest").model
    pa, pb = a._collect_params_with_prefix(), b._collect_params_with_prefix()
    for key in pa:
        np.testing.assert_array_equal(pa[key].data().asnumpy(), pb[key].data().asnumpy(),
                                      err_msg=key)


def test_samples_all_too_long_is_a_clear_error(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("x" * 100 + "\n" + "y" * 80 + "\n")
    with pytest.raises(MXGenError, match="every sample of .* is longer than --max-len 32"):
        train_text(_cfg(str(path), tmp_path / "r"), log=_quiet)


def test_paragraph_and_file_samples(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.txt").write_text("first para\nstill first\n\n  \nsecond\n")
    (tmp_path / "d" / "two.txt").write_text("\nthird\n")
    assert load_samples(str(tmp_path / "d"), per="paragraph") == \
        ["first para\nstill first", "second", "third"]
    assert load_samples(str(tmp_path / "d"), per="file") == \
        ["first para\nstill first\n\n  \nsecond", "third"]
    assert load_samples(str(tmp_path / "d"), per="line") == \
        ["first para", "still first", "second", "third"]
