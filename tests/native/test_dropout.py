"""mxgen_dropout: masks follow Philox4x32-10 bit for bit on every kernel path,
the Bernoulli statistics, the gradient, inference mode, tiny rates, and
clear errors."""
import mxnet as mx
import numpy as np
import pytest

from mxgen.models import CharRNN


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
def test_dropout_op_masks_follow_philox(isa, n, p, salt):
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


def test_dropout_op_statistics_gradient_and_inference(isa):
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


@pytest.mark.parametrize("p", [1e-9, 2.0 ** -26])
def test_tiny_rates_keep_everything_as_mxnet_does(isa, p):
    """For p below float's resolution at 1, keep = 1 - p rounds to 1: MXNet
    keeps every element, and so must the op (its threshold keep * 2^32 would
    not fit in 32 bits)."""
    x = mx.nd.random.normal(shape=(5000,))
    probe = mx.nd.array(2.0 * np.random.RandomState(3).randint(0, 2, size=64))
    np.testing.assert_array_equal(mx.nd.mxgen_dropout(x, probe, p=p).asnumpy(), x.asnumpy())


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
    data = mx.nd.array(np.array(vocab.encode("Supposing that the kernels are fast, what "
                                             "then? Is there not ground for suspecting")[:60])
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
