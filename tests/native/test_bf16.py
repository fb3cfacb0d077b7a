"""bfloat16 in the native kernels: GEMMs with bfloat16 operands and float32
sums (AMX tiles, VDPBF16PS, or emulated with float32 multiplies) give the
float32 results to within bfloat16 rounding, the same numbers on every path
that runs them, and training and generation that hold up."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from mxgen import _native
from mxgen.generation import generate
from mxgen.models import CharRNN
from mxgen.nn.rnn import FusedRNN
from .conftest import bf16_round, gemm_case


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (37, 100, 129), (64, 1024, 256),
                                   (6, 16, 301), (200, 33, 17), (33, 65, 40)])
def test_bf16_gemm_is_the_product_of_rounded_operands(isa, shape):
    """C = bf16(A) bf16(B) with float32 sums: within float32 summation error of
    the float64 product of the rounded operands, on every path."""
    K = shape[2]
    a, b, c = gemm_case(shape, "mxgen_sgemm_bf16")
    ref = bf16_round(a).astype(np.float64) @ bf16_round(b).astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=0, atol=1e-5 * np.sqrt(K))
    # and really bfloat16: the float32 product differs by more than that somewhere
    if K >= 16:
        assert np.abs(a.astype(np.float64) @ b - ref).max() > 1e-5 * np.sqrt(K)


def _layer_pass(mode, impl, dtype, T, N, I, H, seed=3):
    """Outputs and gradients of one layer (the same weights, input and
    output gradient for every call with the same seed)."""
    rng = np.random.RandomState(seed)
    layer = FusedRNN(mode, H, I)
    layer.initialize(mx.init.Uniform(0.5))
    bound = 1.5 / np.sqrt(H)           # a trained layer's scale, not a chaotic one
    layer.weights.set_data(mx.nd.array(rng.uniform(-bound, bound, size=layer.weights.shape)))
    layer.set_impl(impl)
    layer.set_dtype(dtype)
    x = mx.nd.array(rng.normal(size=(T, N, I)))
    states = [mx.nd.array(rng.normal(scale=0.5, size=s)) for s in layer.state_shapes(N)]
    x.attach_grad()
    for s in states:
        s.attach_grad()
    dy = mx.nd.array(rng.normal(size=(T, N, H)))
    with autograd.record():
        y, new_states = layer(x, *states)
        loss = (y * dy).sum() + sum((s * (j + 1)).sum() for j, s in enumerate(new_states))
    loss.backward()
    out = {"y": y, "x.grad": x.grad, "w.grad": layer.weights.grad()}
    out.update({"state%d" % j: s for j, s in enumerate(new_states)})
    out.update({"state%d.grad" % j: s.grad for j, s in enumerate(states)})
    return {k: v.asnumpy() for k, v in out.items()}


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("shape", [(3, 3, 5, 17), (12, 16, 64, 64), (20, 32, 64, 256)])
def test_bf16_layers_are_float32_layers_to_within_bfloat16_rounding(isa, mode, shape):
    """Forward and every gradient of a bfloat16 layer against MXNet's fused
    float32 op: bfloat16 keeps 8 significand bits, so relative errors of a few
    parts in a thousand per product, summed over the layer."""
    ref = _layer_pass(mode, "fused", "float32", *shape)
    got = _layer_pass(mode, "native", "bfloat16", *shape)
    f32 = _layer_pass(mode, "native", "float32", *shape)
    for key in ref:
        scale = np.abs(ref[key]).max() + 1e-6
        err = np.abs(got[key] - ref[key]).max() / scale
        assert err < 3e-2, (key, err)
        # the float32 native layer is far closer: the difference is bfloat16's
        assert np.abs(f32[key] - ref[key]).max() / scale < 1e-4, key


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_every_path_gives_the_same_bfloat16_numbers(mode):
    """AMX tiles, VDPBF16PS and the emulation round the same operands and
    sum exact products in float32: only the order of the sums differs, which
    can move an intermediate across a bfloat16 rounding boundary (one
    bfloat16 unit, 2**-8 relative), never more."""
    results = {}
    for isa in _native.supported_isas():
        previous = _native.set_isa(isa)
        try:
            results[isa] = _layer_pass(mode, "native", "bfloat16", 12, 16, 64, 64)
        finally:
            _native.set_isa(previous)
    base = results[_native.supported_isas()[-1]]
    for isa, got in results.items():
        for key in base:
            scale = np.abs(base[key]).max() + 1e-6
            assert np.abs(got[key] - base[key]).max() / scale < 2 ** -8, (isa, key)


def test_bf16_training_follows_float32(tmp_path):
    """80 steps of a 2x64 LSTM on the embedded corpus: the bfloat16 run's
    loss follows the float32 run's (same seed, same batches) and does not
    diverge."""
    from mxgen.train.text import TextTrainConfig, train_text
    import json
    cfg = dict(data="stdlib", max_chars=60000, num_embed=32, num_hidden=64, num_layers=2,
               seq_len=40, batch_size=16, max_steps=80, epochs=1, dropout=0.0, progress=False,
               log_interval=10, seed=5, rnn_impl="native", dropout_impl="mxnet")
    losses = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        train_text(TextTrainConfig(out=str(out), dtype=dtype, **cfg), log=lambda *_: None)
        losses[dtype] = [r["loss"] for r in map(json.loads, open(out / "metrics.jsonl"))
                         if r["kind"] == "train"]
    f32, bf16 = np.array(losses["float32"]), np.array(losses["bfloat16"])
    assert len(f32) == len(bf16) == 8 and np.isfinite(bf16).all()
    assert f32[-1] < 0.8 * f32[0] and bf16[-1] < 0.8 * bf16[0]     # both learn
    assert np.abs(bf16 - f32).max() < 0.05 * f32.max(), (f32, bf16)


def _model(vocab, mode, hidden=48):
    mx.random.seed(11)
    model = CharRNN(len(vocab), 16, hidden, 2, dropout=0.0, mode=mode)
    model.initialize(mx.init.Xavier(magnitude=6))
    model.hybridize(static_alloc=True)
    return model


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 3, 9])
@pytest.mark.parametrize("hidden", [48, 200])    # 200: 7 panels, blocks of 4, 2 and 1
def test_bf16_greedy_text_follows_float32_until_a_near_tie(vocab, mode, batch, hidden):
    """Greedy bfloat16 generation gives the float32 text, or where it first
    differs, the two most likely characters of the float32 model were a near
    tie: within twice the bfloat16 rounding bound, which is 2% of the largest
    logit (and the bfloat16 logits there must keep to that bound)."""
    model = _model(vocab, mode, hidden)
    prompt = "Supposing that the kernels"
    f32 = generate(model, vocab, prompt, 80, temperature=0, num_samples=batch, native=True,
                   dtype="float32")
    bf16 = generate(model, vocab, prompt, 80, temperature=0, num_samples=batch, native=True,
                    dtype="bfloat16")
    assert all(len(a) == len(b) for a, b in zip(f32, bf16))
    for a, b in zip(f32, bf16):
        same = next((i for i, (u, v) in enumerate(zip(a, b)) if u != v), len(a))
        assert same >= len(prompt), (same, a, b)
        if same == len(a):
            continue
        data = mx.nd.array(vocab.encode(a[:same])[:, None])
        model.set_rnn_impl("native")
        with autograd.predict_mode():
            model.set_dtype("float32")
            exact = model(data, *model.begin_state(1))[0][-1, 0].asnumpy()
            model.set_dtype("bfloat16")
            rounded = model(data, *model.begin_state(1))[0][-1, 0].asnumpy()
            model.set_dtype("float32")
        bound = 0.02 * np.abs(exact).max()
        assert np.abs(rounded - exact).max() <= bound, (np.abs(rounded - exact).max(), bound)
        top = np.sort(exact)[-2:]
        assert top[1] - top[0] <= 2 * bound, (top, bound, a, b)
