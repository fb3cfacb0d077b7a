"""mxgen_char_rnn_generate and mxgen_sample: the same ids as the pure-MXNet
paths, the target distributions, reproducibility and clear errors, under
every kernel path (``isa``)."""
import mxnet as mx
import numpy as np
import pytest

from mxgen import _native
from mxgen.errors import MXGenError
from mxgen.generation import generate
from mxgen.models import CharRNN

from ..test_generation import check_sampler_distributions


def _model(vocab, mode, layers, hidden=48):
    mx.random.seed(11)
    model = CharRNN(len(vocab), 16, hidden, layers, dropout=0.2, mode=mode)
    model.initialize(mx.init.Xavier(magnitude=6))
    model.hybridize(static_alloc=True)
    return model


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [1, 3, 6, 9])     # 9 takes the packed-GEMM path
# 200 units are 7 panels of 32 (the last one partial): blocks of 4, 2 and 1
# panels per thread in the small-batch path
@pytest.mark.parametrize("hidden", [48, 200])
def test_native_greedy_equals_hybridized_loop(vocab, isa, mode, layers, batch, hidden):
    model = _model(vocab, mode, layers, hidden)
    prompt = "Supposing that the kernels"
    loop = generate(model, vocab, prompt, 60, temperature=0, num_samples=batch, native=False)
    native = generate(model, vocab, prompt, 60, temperature=0, num_samples=batch, native=True,
                      dtype="float32")
    assert native == loop


def test_native_calls_carry_nothing_over(vocab):
    """What a call keeps for the next (zero states per model and batch size,
    the packed weights per thread) never changes what a call gives: calls
    with another batch size, or another model, in between."""
    model = _model(vocab, "lstm", 2)
    kw = dict(temperature=0, native=True, dtype="float32")
    first = generate(model, vocab, "The", 40, num_samples=1, **kw)
    assert generate(model, vocab, "The", 40, num_samples=3, **kw) == first * 3
    assert generate(model, vocab, "The", 40, num_samples=1, **kw) == first
    other = _model(vocab, "gru", 1, hidden=200)
    loop = generate(other, vocab, "The", 40, num_samples=1, temperature=0, native=False)
    assert generate(other, vocab, "The", 40, num_samples=1, **kw) == loop
    assert generate(model, vocab, "The", 40, num_samples=1, **kw) == first


def test_native_sampling_is_reproducible_and_the_same_on_every_path(vocab):
    model = _model(vocab, "lstm", 2)
    kw = dict(temperature=0.8, top_k=20, top_p=0.9, num_samples=5, native=True, dtype="float32")
    runs = {}
    for isa in _native.supported_isas():
        previous = _native.set_isa(isa)
        try:
            runs[isa] = generate(model, vocab, "The", 80, seed=3, **kw)
            assert runs[isa] == generate(model, vocab, "The", 80, seed=3, **kw)
            assert runs[isa] != generate(model, vocab, "The", 80, seed=4, **kw)
        finally:
            _native.set_isa(previous)
    assert len(set(runs["generic"])) > 1
    # paths differ only in float rounding, far below what moves a draw here
    assert len(set(tuple(r) for r in runs.values())) == 1, runs


def _native_draws(logits, num, **attrs):
    mx.random.seed(5)
    batch = mx.nd.array(np.repeat(logits[None], num, axis=0))
    ids = mx.nd.mxgen_sample(batch, **attrs).asnumpy().astype(int)
    return np.bincount(ids, minlength=len(logits))


def test_sampler_op_matches_target_distributions(isa):
    logits = check_sampler_distributions(_native_draws)
    greedy = mx.nd.mxgen_sample(mx.nd.array(logits[None]), temperature=0).asscalar()
    assert greedy == logits.argmax()


def test_same_seed_same_draws(isa):
    logits = mx.nd.random.normal(shape=(64, 30))
    mx.random.seed(9)
    a = mx.nd.mxgen_sample(logits, temperature=1.0).asnumpy()
    mx.random.seed(9)
    b = mx.nd.mxgen_sample(logits, temperature=1.0).asnumpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("attrs,msg", [
    (dict(top_k=-1), "top_k must be an integer >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(temperature=-0.5), "temperature must be a finite number >= 0"),
    (dict(top_k=50), "top_k=50 exceeds the vocabulary size 30"),
])
def test_bad_attributes_are_rejected(attrs, msg):
    with pytest.raises(mx.base.MXNetError, match=msg):
        mx.nd.mxgen_sample(mx.nd.ones((2, 30)), **attrs).asnumpy()


def _gen_args(model, ids, batch):
    return ([mx.nd.array(ids)] + model.begin_state(batch) + [model.embedding.weight.data()]
            + [layer.weights.data() for layer in model.layers]
            + [model.decoder.weight.data(), model.decoder.bias.data()])


def test_generate_op_checks_shapes(vocab):
    model = _model(vocab, "lstm", 2)
    args = _gen_args(model, [0, 0], 2)
    gru_args = args[:1] + [args[1], args[3]] + args[5:]        # gru: h only, lstm weights
    with pytest.raises(mx.base.MXNetError, match="layer 0 weights must be a flat"):
        mx.nd.mxgen_char_rnn_generate(*gru_args, mode="gru", num_layers=2, num_hidden=48,
                                      length=5)[0].asnumpy()
    with pytest.raises(mx.base.MXNetError, match=r"state 0 must be \(1, 2, 64\)"):
        mx.nd.mxgen_char_rnn_generate(*args, mode="lstm", num_layers=2, num_hidden=64,
                                      length=5)[0].asnumpy()


@pytest.mark.parametrize("bad", [-1.0, 1e20, float("nan"), 2.5, 10 ** 6])
def test_generate_op_rejects_ids_outside_the_vocabulary(vocab, bad):
    """Ids are checked as floats before any cast to int (1e20 or NaN cast
    first would be undefined behaviour)."""
    model = _model(vocab, "lstm", 2)
    args = _gen_args(model, [1.0, bad], 2)
    with pytest.raises(mx.base.MXNetError, match=r"id .* \(row 1\) is not in the vocabulary"):
        mx.nd.mxgen_char_rnn_generate(*args, mode="lstm", num_layers=2, num_hidden=48,
                                      length=3)[0].asnumpy()


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 9])
def test_generate_op_primes_with_a_prompt_per_row(vocab, isa, mode, batch):
    """ids (N, P): the op runs the first P - 1 columns through the layers
    itself; the same ids and states as priming through the model first and
    passing the last column."""
    model = _model(vocab, mode, 2)
    prompt = vocab.encode("Supposing that")
    kw = dict(mode=mode, num_layers=2, num_hidden=48, length=20, temperature=0.0)
    ids = np.repeat(prompt[None, :], batch, axis=0)
    one_call = mx.nd.mxgen_char_rnn_generate(*_gen_args(model, ids, batch), **kw)
    with mx.autograd.predict_mode():
        _, states = model(mx.nd.array(ids[:, :-1].T), *model.begin_state(batch))
    args = _gen_args(model, ids[:, -1], batch)
    args[1:1 + len(states)] = states
    primed = mx.nd.mxgen_char_rnn_generate(*args, **kw)
    np.testing.assert_array_equal(one_call[0].asnumpy(), primed[0].asnumpy())
    for a, b in zip(one_call[1:], primed[1:]):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-5)


def test_generate_op_checks_every_prompt_id(vocab):
    model = _model(vocab, "lstm", 2)
    args = _gen_args(model, [[1.0, 2.0, 3.0], [1.0, len(vocab), 3.0]], 2)
    with pytest.raises(mx.base.MXNetError, match=r"id %d\.?0* \(row 4\) is not in the vocabulary"
                       % len(vocab)):
        mx.nd.mxgen_char_rnn_generate(*args, mode="lstm", num_layers=2, num_hidden=48,
                                      length=3)[0].asnumpy()


def test_native_can_be_required_or_refused(vocab, monkeypatch):
    model = _model(vocab, "lstm", 1)
    monkeypatch.setenv("MXGEN_NATIVE", "0")
    with pytest.raises(MXGenError, match="native generation requested but unavailable"):
        generate(model, vocab, "a", 5, native=True)
    assert generate(model, vocab, "a", 5, temperature=0)[0].startswith("a")


@pytest.mark.parametrize("batch", [1, 64])
def test_generation_auto_follows_the_measurement(vocab, isa, batch):
    """native=None runs the native op only where it measured faster than the
    hybridized loop for this model and batch (the portable path loses at
    batch 64 on AVX2/AVX-512 CPUs)."""
    import re
    from mxgen import _calibrate
    from mxgen.generation import generation_kernel
    model = _model(vocab, "lstm", 2)
    native, _, reason = generation_kernel(model, batch, dtype="float32")
    m = re.search(r"\(([\d.]+) vs ([\d.]+) ms", reason)
    assert m, reason
    threshold = (1 - _calibrate.MARGIN) * float(m.group(2))
    if abs(float(m.group(1)) - threshold) > 0.1:     # the reason prints 0.1 ms
        assert native == (float(m.group(1)) < threshold), reason
    assert "(%s kernels)" % isa in reason
