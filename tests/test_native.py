"""mxgen's native operators (kernels/): exactness against the pure-MXNet paths,
sampling statistics, and clear errors.  Skipped, with the reason, when the
library is not built; CI builds it through ``pip install -e .``."""
import mxnet as mx
import numpy as np
import pytest

from mxgen import _native
from mxgen.data.vocab import Vocab
from mxgen.errors import MXGenError
from mxgen.generation import generate
from mxgen.models import CharRNN

from .test_generation import check_sampler_distributions

pytestmark = pytest.mark.skipif(not _native.available(),
                                reason="native kernels unavailable: %s" % (_native.status()[2],))


@pytest.fixture(scope="module")
def vocab(nietzsche):
    return Vocab.from_text(nietzsche)


def _model(vocab, mode, layers, hidden=48):
    mx.random.seed(11)
    model = CharRNN(len(vocab), 16, hidden, layers, dropout=0.2, mode=mode)
    model.initialize(mx.init.Xavier(magnitude=6))
    model.hybridize(static_alloc=True)
    return model


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [1, 4, 9])        # 9 takes the BLAS path
def test_native_greedy_equals_hybridized_loop(vocab, mode, layers, batch):
    model = _model(vocab, mode, layers)
    prompt = "Supposing that Truth is a woman"
    loop = generate(model, vocab, prompt, 60, temperature=0, num_samples=batch, native=False)
    native = generate(model, vocab, prompt, 60, temperature=0, num_samples=batch, native=True)
    assert native == loop


def test_native_sampling_is_reproducible(vocab):
    model = _model(vocab, "lstm", 2)
    kw = dict(temperature=0.8, top_k=20, top_p=0.9, num_samples=5, native=True)
    a = generate(model, vocab, "The", 80, seed=3, **kw)
    assert a == generate(model, vocab, "The", 80, seed=3, **kw)
    assert a != generate(model, vocab, "The", 80, seed=4, **kw)
    assert len(set(a)) > 1


def _native_draws(logits, num, **attrs):
    mx.random.seed(5)
    batch = mx.nd.array(np.repeat(logits[None], num, axis=0))
    ids = mx.nd.mxgen_sample(batch, **attrs).asnumpy().astype(int)
    return np.bincount(ids, minlength=len(logits))


def test_sampler_op_matches_target_distributions():
    logits = check_sampler_distributions(_native_draws)
    greedy = mx.nd.mxgen_sample(mx.nd.array(logits[None]), temperature=0).asscalar()
    assert greedy == logits.argmax()


def test_same_seed_same_draws():
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


def test_generate_op_checks_shapes(vocab):
    model = _model(vocab, "lstm", 2)
    states = model.begin_state(2)
    args = ([mx.nd.zeros((2,))] + states + [model.embedding.weight.data()]
            + [layer.weights.data() for layer in model.layers]
            + [model.decoder.weight.data(), model.decoder.bias.data()])
    gru_args = args[:1] + [states[0], states[2]] + args[5:]        # gru: h only, lstm weights
    with pytest.raises(mx.base.MXNetError, match="layer 0 weights must be a flat"):
        mx.nd.mxgen_char_rnn_generate(*gru_args, mode="gru", num_layers=2, num_hidden=48,
                                      length=5)[0].asnumpy()
    with pytest.raises(mx.base.MXNetError, match=r"state 0 must be \(1, 2, 64\)"):
        mx.nd.mxgen_char_rnn_generate(*args, mode="lstm", num_layers=2, num_hidden=64,
                                      length=5)[0].asnumpy()


def test_native_can_be_required_or_refused(vocab, monkeypatch):
    model = _model(vocab, "lstm", 1)
    monkeypatch.setenv("MXGEN_NATIVE", "0")
    with pytest.raises(MXGenError, match="native generation requested but unavailable"):
        generate(model, vocab, "a", 5, native=True)
    assert generate(model, vocab, "a", 5, temperature=0)[0].startswith("a")


def test_info_lists_native_ops(cli):
    proc = cli("info")
    assert "mxgen_sample" in proc.stdout and "mxgen_char_rnn_generate" in proc.stdout


# ------------------------------------------------------ mxgen_lstm / mxgen_gru
def _layer_grads(mode, impl, x, states, w, dy, dstates, H):
    args = [a.copy() for a in [x] + states + [w]]
    for a in args:
        a.attach_grad()
    with mx.autograd.record():
        if impl == "fused":
            outs = mx.nd.RNN(args[0], args[-1], *args[1:-1], state_size=H, num_layers=1,
                             mode=mode, state_outputs=True)
        else:
            op = {"lstm": mx.nd.mxgen_lstm, "gru": mx.nd.mxgen_gru}[mode]
            outs = op(*args, state_size=H)
        loss = (outs[0] * dy).sum() + sum((o * d).sum() for o, d in zip(outs[1:], dstates))
    loss.backward()
    return [o.asnumpy() for o in list(outs) + [a.grad for a in args]]


# (T, N, I, H): the training shape, odd sizes off every block boundary, batch 1.
# Tolerance: after 30 steps both ops are ~7e-6 (relative) from a float64
# reference for GRU (checked when writing gru.h), ~2e-6 for LSTM.
@pytest.mark.parametrize("mode,tol", [("lstm", 2e-6), ("gru", 1e-5)])
@pytest.mark.parametrize("shape", [(30, 32, 64, 256), (7, 5, 13, 40), (3, 1, 8, 17),
                                   (1, 9, 33, 70)])
def test_native_layer_matches_fused_op(mode, tol, shape):
    T, N, I, H = shape
    gates, num_states = {"lstm": (4, 2), "gru": (3, 1)}[mode]
    rng = np.random.RandomState(sum(shape))
    arr = lambda *s, scale=1.0: mx.nd.array(rng.normal(0, scale, s).astype(np.float32))
    x = arr(T, N, I)
    states = [arr(1, N, H) for _ in range(num_states)]
    w = arr(gates * H * (I + H) + 2 * gates * H, scale=0.2)
    dy = arr(T, N, H)
    dstates = [arr(1, N, H) for _ in range(num_states)]
    fused = _layer_grads(mode, "fused", x, states, w, dy, dstates, H)
    native = _layer_grads(mode, "native", x, states, w, dy, dstates, H)
    names = ["y"] + ["state%d" % i for i in range(num_states)] + ["dx"] + \
        ["dstate%d" % i for i in range(num_states)] + ["dw"]
    for name, a, b in zip(names, fused, native):
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(b, a, rtol=0, atol=tol * scale, err_msg=name)


def test_native_layers_reject_bad_shapes():
    x = mx.nd.zeros((5, 2, 8))
    h = mx.nd.zeros((1, 2, 16))
    w = mx.nd.zeros((4 * 16 * 24 + 8 * 16,))
    with pytest.raises(mx.base.MXNetError, match=r"state 1 must be \(1, 2, 16\)"):
        mx.nd.mxgen_lstm(x, h, mx.nd.zeros((1, 3, 16)), w, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"weights must be a flat \(1664,\) vector"):
        mx.nd.mxgen_lstm(x, h, h, mx.nd.zeros((10,)), state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="input must be"):
        mx.nd.mxgen_lstm(mx.nd.zeros((5, 8)), h, h, w, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="state_size must be an integer >= 1"):
        mx.nd.mxgen_lstm(x, h, h, w, state_size=0)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"mxgen_gru: weights must be a flat \(1248,\)"):
        mx.nd.mxgen_gru(x, h, w, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"mxgen_gru: state 0 must be \(1, 2, 16\)"):
        mx.nd.mxgen_gru(x, mx.nd.zeros((2, 16)), mx.nd.zeros((1248,)),
                        state_size=16)[0].wait_to_read()


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_char_rnn_native_equals_fused_hybridized(vocab, mode):
    """The whole model, hybridized, both kernels: same logits, states and gradients."""
    data = mx.nd.array(np.array(vocab.encode("Supposing that truth is a woman--what then? "
                                             "Is there not ground for suspecting")[:60])
                       .reshape(12, 5))
    results = {}
    for impl in ("fused", "native"):
        mx.random.seed(5)
        model = CharRNN(len(vocab), 16, 48, 2, dropout=0.0, mode=mode)
        model.initialize(mx.init.Xavier(magnitude=6))
        assert model.set_rnn_impl(impl) == impl
        model.hybridize(static_alloc=True)
        states = model.begin_state(5)
        with mx.autograd.record():
            logits, new_states = model(data, *states)
            loss = mx.nd.log_softmax(logits).sum()
        loss.backward()
        grads = [p.grad().asnumpy() for p in model.collect_params().values()]
        results[impl] = [logits.asnumpy()] + [s.asnumpy() for s in new_states] + grads
    for a, b in zip(results["fused"], results["native"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_rnn_impl_choice(vocab, monkeypatch):
    from mxgen.models.rnn import resolve_impl
    assert resolve_impl("auto", "lstm") == "native"
    assert resolve_impl("auto", "gru") == "native"
    assert resolve_impl("auto", "rnn_tanh") == "fused"
    assert resolve_impl("auto", "lstm", contexts=[mx.gpu(0)]) == "fused"
    with pytest.raises(MXGenError, match="single-layer lstm and gru only"):
        resolve_impl("native", "rnn_relu")
    with pytest.raises(MXGenError, match="unknown rnn_impl 'cuda'"):
        resolve_impl("cuda", "lstm")
    monkeypatch.setenv("MXGEN_NATIVE", "0")
    assert resolve_impl("auto", "lstm") == "fused"
    with pytest.raises(MXGenError, match="disabled by MXGEN_NATIVE=0"):
        resolve_impl("native", "lstm")


# ---------------------------------------------------------------- dropout
def _philox4x32_10(counter, key):
    """Reference Philox4x32-10 (Salmon et al. 2011) in plain Python."""
    c, (k0, k1), mask = list(counter), key, 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & mask, p1 & mask, ((p0 >> 32) ^ c[3] ^ k1) & mask,
             p0 & mask]
        k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
    return c


def test_philox_reference_known_answer():
    # Random123's published known-answer vectors for Philox4x32-10
    assert _philox4x32_10([0, 0, 0, 0], (0, 0)) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C,
                                                    0x9B00DBD8]
    assert _philox4x32_10([0xFFFFFFFF] * 4, (0xFFFFFFFF, 0xFFFFFFFF)) == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@pytest.mark.parametrize("n,p,salt", [(64, 0.5, 0), (200, 0.3, 7), (1000, 0.9, 2)])
def test_dropout_op_masks_follow_philox(n, p, salt):
    """Element e keeps iff word e // 16 % 4 of block (e // 64) * 16 + e % 16 of
    Philox(counter=(block, 0, salt, 0), key from the probe's bits) < (1-p) 2^32."""
    rng = np.random.RandomState(0)
    bits = rng.randint(0, 2, size=64)
    probe = mx.nd.array(2.0 * bits)                  # training: 0 or 2, as Dropout(ones, 0.5)
    key = sum(int(b) << i for i, b in enumerate(bits))
    x = mx.nd.array(rng.normal(size=(n,)))
    y = mx.nd.mxgen_dropout(x, probe, p=p, salt=salt)
    mask = mx.nd.mxgen_dropout(mx.nd.ones((n,)), probe, p=p, salt=salt)   # the mask itself
    keep = np.float32(1) - np.float32(p)             # float arithmetic, as MXNet's Dropout
    threshold = int(float(keep) * 2 ** 32)
    expect = np.zeros(n, dtype=np.float32)
    for e in range(n):
        block = (e // 64) * 16 + e % 16
        word = _philox4x32_10([block & 0xFFFFFFFF, block >> 32, salt, 0],
                              (key & 0xFFFFFFFF, key >> 32))[e // 16 % 4]
        expect[e] = np.float32(1) / keep if word < threshold else 0.0
    np.testing.assert_array_equal(mask.asnumpy(), expect)
    np.testing.assert_array_equal(y.asnumpy(), x.asnumpy() * expect)


def test_dropout_op_statistics_gradient_and_inference():
    x = mx.nd.random.normal(shape=(100, 32, 256))
    ones = mx.nd.ones(x.shape)
    x.attach_grad()
    mx.random.seed(1)
    with mx.autograd.record():
        probe = mx.nd.Dropout(mx.nd.ones((64,)), p=0.5)
        y = mx.nd.mxgen_dropout(x, probe, p=0.2, salt=1)
    mask = mx.nd.mxgen_dropout(ones, probe, p=0.2, salt=1)          # the same key: the mask
    mask2 = mx.nd.mxgen_dropout(ones, probe, p=0.2, salt=2)
    dy = mx.nd.random.normal(shape=y.shape)
    y.backward(dy)                                                  # recomputes the mask
    m, m2 = mask.asnumpy().ravel(), mask2.asnumpy().ravel()
    n = m.size
    kept = (m > 0).mean()
    assert abs(kept - 0.8) < 5 * np.sqrt(0.16 / n)                    # binomial, 5 sigma
    assert set(np.unique(m)) == {0.0, np.float32(1.25)}
    # independence: neighbours, and two salts from one probe
    both = ((m[1:] > 0) & (m[:-1] > 0)).mean()
    assert abs(both - 0.64) < 5 * np.sqrt(0.64 * 0.36 / n)
    assert abs(((m > 0) & (m2 > 0)).mean() - 0.64) < 5 * np.sqrt(0.64 * 0.36 / n)
    np.testing.assert_array_equal(y.asnumpy(), x.asnumpy() * mask.asnumpy())
    np.testing.assert_array_equal(x.grad.asnumpy(), dy.asnumpy() * mask.asnumpy())
    # the same seed gives the same mask
    mx.random.seed(1)
    with mx.autograd.train_mode():
        probe = mx.nd.Dropout(mx.nd.ones((64,)), p=0.5)
        again = mx.nd.mxgen_dropout(ones, probe, p=0.2, salt=1)
    np.testing.assert_array_equal(again.asnumpy(), mask.asnumpy())
    # outside training the probe is all ones and the op is the identity, backward too
    with mx.autograd.record(train_mode=False):
        probe = mx.nd.Dropout(mx.nd.ones((64,)), p=0.5)
        y_eval = mx.nd.mxgen_dropout(x, probe, p=0.2)
    y_eval.backward(dy)
    np.testing.assert_array_equal(y_eval.asnumpy(), x.asnumpy())
    np.testing.assert_array_equal(x.grad.asnumpy(), dy.asnumpy())


@pytest.mark.parametrize("attrs,probe,msg", [
    (dict(p=0.0), 64, r"p must be in \(0, 1\)"),
    (dict(p=1.0), 64, r"p must be in \(0, 1\)"),
    (dict(p=0.5, salt=-1), 64, "salt must be an integer >= 0"),
    (dict(p=0.5), 32, r"probe must have shape \(64,\)"),
])
def test_dropout_op_rejects_bad_input(attrs, probe, msg):
    with pytest.raises(mx.base.MXNetError, match=msg):
        mx.nd.mxgen_dropout(mx.nd.ones((3, 4)), mx.nd.ones((probe,)), **attrs).asnumpy()


def test_char_rnn_native_dropout_hybrid_equals_eager_and_is_off_in_inference(vocab):
    data = mx.nd.array(np.array(vocab.encode("Supposing that truth is a woman--what then? "
                                             "Is there not ground for suspecting")[:60])
                       .reshape(12, 5))

    def run(dropout_impl, hybrid, train):
        mx.random.seed(5)
        model = CharRNN(len(vocab), 16, 48, 2, dropout=0.3, mode="lstm")
        model.initialize(mx.init.Xavier(magnitude=6))
        assert model.set_dropout_impl(dropout_impl) == dropout_impl
        if hybrid:
            model.hybridize(static_alloc=True)
        mx.random.seed(9)
        with mx.autograd.record(train_mode=train):
            logits, _ = model(data, *model.begin_state(5))
        return logits.asnumpy()

    hybrid = run("native", True, True)
    np.testing.assert_allclose(run("native", False, True), hybrid, rtol=1e-5, atol=1e-6)
    assert np.abs(hybrid - run("native", True, False)).max() > 1e-3   # dropout was on
    # inference: both kernels are the identity, so the models agree exactly
    np.testing.assert_array_equal(run("native", True, False), run("mxnet", True, False))


def test_dropout_impl_choice(monkeypatch):
    from mxgen.models.dropout import resolve_dropout_impl
    assert resolve_dropout_impl("auto") == "native"
    assert resolve_dropout_impl("auto", [mx.gpu(0)]) == "mxnet"
    with pytest.raises(MXGenError, match="unknown dropout_impl 'fast'"):
        resolve_dropout_impl("fast")
    monkeypatch.setenv("MXGEN_NATIVE", "0")
    assert resolve_dropout_impl("auto") == "mxnet"
    with pytest.raises(MXGenError, match="disabled by MXGEN_NATIVE=0"):
        resolve_dropout_impl("native")
