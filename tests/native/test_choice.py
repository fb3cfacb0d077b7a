"""What 'auto' picks: measured on this machine (in a child process, cached
per CPU, kernel path and library build), never the native kernel where it
measured slower, never a CPU-only kernel for a model on another device, and
a reason for the log."""
import json
import os

import mxnet as mx
import pytest

from mxgen import _calibrate, _native
from mxgen.errors import MXGenError
from mxgen.models import CharRNN
from mxgen.nn.dropout import explain_dropout_impl, resolve_dropout_impl
from mxgen.nn.rnn import explain_impl, resolve_impl


def _calls_file():
    return os.path.join(os.environ["MXGEN_CACHE_DIR"], "fake-measure-calls")


def fake_measure(native_ms, fallback_ms):
    """A measurement target for the decision tests: fixed timings, and a
    count of how often it ran (it runs in a child process)."""
    with open(_calls_file(), "a") as f:
        f.write("x")
    return native_ms, fallback_ms


def _calls():
    try:
        with open(_calls_file()) as f:
            return len(f.read())
    except OSError:
        return 0


@pytest.mark.parametrize("native_ms,fallback_ms,impl,words", [
    (5.0, 10.0, "native", "2.00x faster"),
    (10.0, 5.0, "fused", "2.00x slower"),
    (9.9, 10.0, "fused", "1.01x faster"),    # within the margin: MXNet's own op
])
def test_decision_follows_the_measurement_and_is_cached(native_ms, fallback_ms, impl, words):
    shape = {"native_ms": native_ms, "fallback_ms": fallback_ms}
    before = _calls()
    first = _calibrate.decide("test", shape, "tests.native.test_choice:fake_measure",
                              "mxgen_x", "MXNet's x", "fused")
    assert (first.impl, first.cached) == (impl, False)
    assert words in first.reason and "measured now" in first.reason
    assert "(%s kernels)" % _native.isa() in first.reason
    again = _calibrate.decide("test", shape, "tests.native.test_choice:fake_measure",
                              "mxgen_x", "MXNet's x", "fused")
    assert (again.impl, again.cached) == (impl, True) and "cached" in again.reason
    assert _calls() == before + 1                        # measured once
    # another kernel path is another machine: measured again
    other = [i for i in _native.supported_isas() if i != _native.isa()]
    if other:
        previous = _native.set_isa(other[0])
        try:
            third = _calibrate.decide("test", shape, "tests.native.test_choice:fake_measure",
                                      "mxgen_x", "MXNet's x", "fused")
        finally:
            _native.set_isa(previous)
        assert not third.cached and _calls() == before + 2


def test_a_failed_measurement_keeps_mxnets_operator():
    decision = _calibrate.decide("test", {"native_ms": "not a number", "fallback_ms": 1},
                                 "tests.native.test_choice:fake_measure", "mxgen_x",
                                 "MXNet's x", "fused")
    assert decision.impl == "fused" and "could not time" in decision.reason


def test_damaged_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MXGEN_CACHE_DIR", str(tmp_path))
    with open(_calibrate.cache_file(), "w") as f:
        f.write("{not json")
    decision = _calibrate.decide("test", {"native_ms": 1.0, "fallback_ms": 2.0},
                                 "tests.native.test_choice:fake_measure", "mxgen_x",
                                 "MXNet's x", "fused")
    assert decision.impl == "native"
    with open(_calibrate.cache_file()) as f:
        assert len(json.load(f)) == 1


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_auto_agrees_with_a_real_measurement_on_every_path(isa, mode):
    """Real timings of both kernels (small shape): the choice is the faster
    one, and the reason gives both numbers."""
    shape = {"input_size": 16, "num_hidden": 64, "num_layers": 1, "seq_len": 20, "batch": 8}
    impl, reason = explain_impl("auto", mode, shape=shape)
    m = __import__("re").search(r"\(([\d.]+) vs ([\d.]+) ms", reason)
    assert m, reason
    native_ms, fused_ms = float(m.group(1)), float(m.group(2))
    # the reason prints 0.1 ms: within that of the threshold either answer fits
    threshold = (1 - _calibrate.MARGIN) * fused_ms
    if abs(native_ms - threshold) > 0.1:
        assert impl == ("native" if native_ms < threshold else "fused"), reason
    assert "(%s kernels)" % isa in reason


def test_generic_kernels_lose_to_onednn_and_auto_says_so():
    """The portable path runs at a fraction of oneDNN's speed on an
    AVX2/AVX-512 CPU: 'auto' must keep MXNet's fused op there."""
    if "avx2" not in _native.supported_isas():
        pytest.skip("this CPU has no AVX2: the portable path is its best")
    previous = _native.set_isa("generic")
    try:
        impl, reason = explain_impl("auto", "lstm", shape={"input_size": 64, "num_hidden": 256,
                                                           "num_layers": 2, "seq_len": 100,
                                                           "batch": 32})
    finally:
        _native.set_isa(previous)
    assert impl == "fused" and "slower than MXNet's fused RNN op" in reason, reason


def test_forced_and_impossible_choices():
    assert resolve_impl("fused", "lstm") == "fused"
    assert resolve_impl("native", "gru") == "native"
    assert resolve_impl("auto", "rnn_tanh") == "fused"
    assert resolve_impl("auto", "lstm", contexts=[mx.gpu(0)]) == "fused"
    assert resolve_dropout_impl("auto", [mx.gpu(0)]) == "mxnet"
    with pytest.raises(MXGenError, match="single-layer lstm and gru only"):
        resolve_impl("native", "rnn_relu")
    with pytest.raises(MXGenError, match="unknown rnn_impl 'cuda'"):
        resolve_impl("cuda", "lstm")
    with pytest.raises(MXGenError, match="unknown dropout_impl 'fast'"):
        resolve_dropout_impl("fast")
    with pytest.raises(MXGenError, match="on CPU only"):
        resolve_impl("native", "lstm", contexts=[mx.gpu(0)])


def test_disabled_native_kernels(monkeypatch):
    monkeypatch.setenv("MXGEN_NATIVE", "0")
    assert explain_impl("auto", "lstm")[0] == "fused"
    assert explain_dropout_impl("auto")[0] == "mxnet"
    with pytest.raises(MXGenError, match="disabled by MXGEN_NATIVE=0"):
        resolve_impl("native", "lstm")
    with pytest.raises(MXGenError, match="disabled by MXGEN_NATIVE=0"):
        resolve_dropout_impl("native")


def test_auto_takes_the_models_own_devices(monkeypatch):
    """Without contexts, set_*_impl('auto') asks the model's parameters: a
    model on a GPU gets MXNet's operators, never a CPU-only one.  (No GPU
    here: the parameters report one, as they would after initialize on it.)"""
    model = CharRNN(30, 8, 16, 1, dropout=0.2)
    model.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    assert model._contexts(None) == [mx.cpu(0), mx.cpu(1)]
    monkeypatch.setattr(mx.gluon.Parameter, "list_ctx", lambda self: [mx.gpu(0)])
    assert model.set_rnn_impl("auto") == "fused"
    assert "on CPU only" in model.rnn_impl_reason
    assert model.set_dropout_impl("auto") == "mxnet"
    with pytest.raises(MXGenError, match="on CPU only"):
        model.set_rnn_impl("native")


def test_native_model_refuses_data_on_another_device(monkeypatch):
    model = CharRNN(30, 8, 16, 1)
    model.initialize()
    model.set_rnn_impl("native")
    model.hybridize()
    x = mx.nd.zeros((3, 2))
    states = model.begin_state(2)
    model(x, *states)                      # CPU data: runs
    # data on a GPU (reported by the array: no GPU here) is refused up front
    monkeypatch.setattr(mx.nd.NDArray, "context", property(lambda self: mx.gpu(0)))
    with pytest.raises(MXGenError, match="native CPU kernels but got data on gpu"):
        model(x, *states)


def test_resume_keeps_the_kernels_trained_with(tmp_path):
    """A resumed run uses the checkpoint's kernels (another kernel would change
    float rounding and the dropout stream) unless the user names others."""
    import json as _json
    from mxgen.train.text import TextTrainConfig, train_text
    cfg = dict(data="stdlib", out=str(tmp_path), max_chars=24000, num_embed=8, num_hidden=16,
               num_layers=1, seq_len=10, batch_size=4, epochs=1, progress=False, seed=1)
    train_text(TextTrainConfig(max_steps=3, rnn_impl="native", dropout_impl="native",
                               dtype="bfloat16", **cfg),
               log=lambda *_: None, explicit=("rnn_impl", "dropout_impl", "dtype"))
    lines = []
    result = train_text(TextTrainConfig(max_steps=5, resume=True, **cfg), log=lines.append)
    assert (result["model"].rnn_impl, result["model"].dropout_impl,
            result["model"].dtype) == ("native", "native", "bfloat16")
    assert any("recurrent kernel: mxgen native" in l and "the checkpoint's kernel" in l
               for l in lines), lines
    saved = _json.load(open(os.path.join(result["checkpoint"], "config.json")))
    assert saved["kernels"] == {"rnn_impl": "native", "dropout_impl": "native",
                                "dtype": "bfloat16"}
    # named explicitly: the user's choice
    result = train_text(TextTrainConfig(max_steps=7, resume=True, rnn_impl="fused",
                                        dtype="float32", **cfg),
                        log=lambda *_: None, explicit=("rnn_impl", "dtype"))
    assert (result["model"].rnn_impl, result["model"].dtype) == ("fused", "float32")
