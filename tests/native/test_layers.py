"""mxgen_lstm / mxgen_gru: outputs and every gradient equal MXNet's fused RNN
operator under every kernel path, gradient accumulation, inference mode, and
clear errors."""
import mxnet as mx
import numpy as np
import pytest

from mxgen import _native
from mxgen.models import CharRNN
from mxgen.nn.rnn import FusedRNN


def _probe(train):
    """What a model hands the ops: MXNet's Dropout of ones (see dropout.py)."""
    with mx.autograd.train_mode() if train else mx.autograd.predict_mode():
        return mx.nd.Dropout(mx.nd.ones((64,)), p=0.5)


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
            outs = op(*args, _probe(True), state_size=H)
        loss = (outs[0] * dy).sum() + sum((o * d).sum() for o, d in zip(outs[1:], dstates))
    loss.backward()
    return [o.asnumpy() for o in list(outs) + [a.grad for a in args]]


def _layer_inputs(mode, shape):
    T, N, I, H = shape
    gates, num_states = {"lstm": (4, 2), "gru": (3, 1)}[mode]
    rng = np.random.RandomState(sum(shape))
    arr = lambda *s, scale=1.0: mx.nd.array(rng.normal(0, scale, s).astype(np.float32))
    x = arr(T, N, I)
    states = [arr(1, N, H) for _ in range(num_states)]
    w = arr(gates * H * (I + H) + 2 * gates * H, scale=0.2)
    dy = arr(T, N, H)
    dstates = [arr(1, N, H) for _ in range(num_states)]
    return x, states, w, dy, dstates


# (T, N, I, H): the training shape, odd sizes off every block boundary, batch 1.
# Tolerance: after 30 steps both ops are ~7e-6 (relative) from a float64
# reference for GRU (checked when writing gru.h), ~2e-6 for LSTM.
@pytest.mark.parametrize("mode,tol", [("lstm", 2e-6), ("gru", 1e-5)])
@pytest.mark.parametrize("shape", [(30, 32, 64, 256), (7, 5, 13, 40), (3, 1, 8, 17),
                                   (1, 9, 33, 70)])
def test_native_layer_matches_fused_op(isa, mode, tol, shape):
    x, states, w, dy, dstates = _layer_inputs(mode, shape)
    H = shape[3]
    fused = _layer_grads(mode, "fused", x, states, w, dy, dstates, H)
    native = _layer_grads(mode, "native", x, states, w, dy, dstates, H)
    names = ["y"] + ["state%d" % i for i in range(len(states))] + ["dx"] + \
        ["dstate%d" % i for i in range(len(states))] + ["dw"]
    for name, a, b in zip(names, fused, native):
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(b, a, rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_inference_forward_saves_nothing_and_matches_training(isa, mode):
    """Outside training the op keeps no saved gates (priming, validation): its
    outputs equal the training forward's, and a backward pass after it is
    refused with a clear error instead of reading stale gates."""
    x, states, w, dy, _ = _layer_inputs(mode, (6, 3, 10, 20))
    op = {"lstm": mx.nd.mxgen_lstm, "gru": mx.nd.mxgen_gru}[mode]
    train = op(x, *states, w, _probe(True), state_size=20)
    infer = op(x, *states, w, _probe(False), state_size=20)
    for a, b in zip(train, infer):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    x.attach_grad()
    with mx.autograd.record(train_mode=False):
        out = op(x, *states, w, _probe(False), state_size=20)[0]
    with pytest.raises(mx.base.MXNetError, match="without a matching training forward pass"):
        out.backward(dy)
        x.grad.asnumpy()


@pytest.mark.parametrize("hybrid", [False, True])
def test_grad_req_add_accumulates_like_the_fused_op(hybrid):
    """lib_api gives custom ops no write/add request; FusedRNN's identities
    make grad_req='add' (Gluon's gradient accumulation) add, for the weights
    and for an input that asks for it."""
    def run(impl):
        mx.random.seed(0)
        layer = FusedRNN("lstm", 16, 8)
        layer.initialize()
        layer.set_impl(impl)
        if hybrid:
            layer.hybridize(static_alloc=True)
        layer.weights.grad_req = "add"
        x = mx.nd.random.uniform(shape=(5, 3, 8))
        x.attach_grad(grad_req="add")
        states = layer.begin_state(3)
        for _ in range(3):
            with mx.autograd.record():
                y, _ = layer(x, *states)
                loss = (y * y).sum()
            loss.backward()
        return layer.weights.grad().asnumpy(), x.grad.asnumpy()

    fused, native = run("fused"), run("native")
    for a, b in zip(fused, native):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_native_layers_reject_bad_shapes():
    x = mx.nd.zeros((5, 2, 8))
    h = mx.nd.zeros((1, 2, 16))
    w = mx.nd.zeros((4 * 16 * 24 + 8 * 16,))
    p = _probe(True)
    with pytest.raises(mx.base.MXNetError, match=r"state 1 must be \(1, 2, 16\)"):
        mx.nd.mxgen_lstm(x, h, mx.nd.zeros((1, 3, 16)), w, p, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"weights must be a flat \(1664,\) vector"):
        mx.nd.mxgen_lstm(x, h, h, mx.nd.zeros((10,)), p, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="input must be"):
        mx.nd.mxgen_lstm(mx.nd.zeros((5, 8)), h, h, w, p, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="state_size must be an integer >= 1"):
        mx.nd.mxgen_lstm(x, h, h, w, p, state_size=0)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"probe must have shape \(64,\)"):
        mx.nd.mxgen_lstm(x, h, h, w, mx.nd.ones((3,)), state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"mxgen_gru: weights must be a flat \(1248,\)"):
        mx.nd.mxgen_gru(x, h, w, p, state_size=16)[0].wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=r"mxgen_gru: state 0 must be \(1, 2, 16\)"):
        mx.nd.mxgen_gru(x, mx.nd.zeros((2, 16)), mx.nd.zeros((1248,)), p,
                        state_size=16)[0].wait_to_read()


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_char_rnn_native_equals_fused_hybridized(vocab, isa, mode):
    """The whole model, hybridized, both kernels: same logits, states and gradients."""
    data = mx.nd.array(np.array(vocab.encode("Supposing that the kernels are fast, what "
                                             "then? Is there not ground for suspecting")[:60])
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


def test_saved_gate_pool_is_bounded_in_bytes():
    """Eager calls each make an op state; the buffers they leave for reuse stay
    under the pool's byte limit, however many large calls ran."""
    import ctypes
    lib = ctypes.CDLL(_native.status()[0])
    lib.mxgen_saved_pool_limit.restype = lib.mxgen_saved_pool_bytes.restype = ctypes.c_size_t
    limit = lib.mxgen_saved_pool_limit()
    H = 256
    for T in (400, 300, 200, 500, 350, 250):      # 32 x 5H x 4 B = 160 KB per time step
        x = mx.nd.ones((T, 32, 8))
        states = [mx.nd.zeros((1, 32, H))] * 2
        w = mx.nd.zeros((4 * H * (8 + H) + 8 * H,))
        for _ in range(3):
            mx.nd.mxgen_lstm(x, *states, w, _probe(True), state_size=H)[0].wait_to_read()
    mx.nd.waitall()
    pooled = lib.mxgen_saved_pool_bytes()
    assert 0 < pooled <= limit
