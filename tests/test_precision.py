"""Mixed precision of MXNet's own ops (mxgen.nn.precision) and the training
loops' use of it: bfloat16 where this CPU's oneDNN has it.  MXNet has no
float16 convolution or matrix-product kernels on CPUs, so the float16 graphs
run in benchmarks/gpu/check.sh; their loss scaling is dtype-agnostic and is
checked here in float32, where power-of-two scaling is exact."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from mxgen import _env
from mxgen.errors import MXGenError
from mxgen.models import load
from mxgen.models.dcgan import DCGANConfig
from mxgen.nn import precision
from mxgen.nn.precision import LossScaler, compute_dtype_of, explain_precision, set_compute_dtype
from mxgen.train.gan import GANTrainConfig, build_gan_step, train_gan
from mxgen.utils.checkpoint import resolve
from tests.native.conftest import bf16_round

BF16_CPU = precision.bf16_cpu() is None
needs_bf16 = pytest.mark.skipif(not BF16_CPU, reason="this CPU has no bfloat16 in oneDNN: %s"
                                % precision.bf16_cpu())


def _layer(kind):
    mx.random.seed(4)
    layer = {"conv": lambda: precision.Conv2D(8, 3, 1, 1, in_channels=5),
             "deconv": lambda: precision.Conv2DTranspose(8, 4, 2, 1, in_channels=5),
             "dense": lambda: precision.Dense(7, in_units=5)}[kind]()
    layer.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.uniform(-1, 1, shape=(3, 5, 6, 6) if kind != "dense" else (3, 5))
    return layer, x


@needs_bf16
@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize("hybrid", [False, True])
def test_bf16_layer_is_the_float32_op_on_rounded_operands(kind, hybrid):
    layer, x = _layer(kind)
    if hybrid:
        layer.hybridize(static_alloc=True)
    exact = layer(x).asnumpy()
    assert set_compute_dtype(layer, "bfloat16") == 1 and compute_dtype_of(layer) == "bfloat16"
    low = layer(x)
    assert low.dtype == np.float32 and layer.weight.data().dtype == np.float32
    # the reference: the float32 op on bfloat16-rounded input, weight and bias
    w, b = layer.weight.data().asnumpy(), layer.bias.data().asnumpy()
    ref_layer, _ = _layer(kind)
    ref_layer.weight.set_data(mx.nd.array(bf16_round(w)))
    ref_layer.bias.set_data(mx.nd.array(bf16_round(b)))
    ref = ref_layer(mx.nd.array(bf16_round(x.asnumpy()))).asnumpy()
    # float32 sums inside; the result is rounded to bfloat16 once on the way out
    np.testing.assert_allclose(low.asnumpy(), ref, rtol=2 ** -7, atol=1e-6)
    assert np.abs(low.asnumpy() - exact).max() > 0          # it did compute in bfloat16


@needs_bf16
def test_gradients_reach_the_float32_weights():
    layer, x = _layer("conv")
    layer.hybridize(static_alloc=True)
    x.attach_grad()
    grads = {}
    for dtype in ("float32", "bfloat16"):
        set_compute_dtype(layer, dtype)
        with autograd.record():
            y = layer(x)
            loss = (y * y).sum()
        loss.backward()
        grads[dtype] = (layer.weight.grad().asnumpy().copy(), x.grad.asnumpy().copy())
        assert layer.weight.grad().dtype == np.float32
    for exact, low in zip(grads["float32"], grads["bfloat16"]):
        rel = np.abs(low - exact).max() / np.abs(exact).max()
        assert 0 < rel < 0.03, rel


@needs_bf16
def test_deconvolution_keeps_float32_when_training_and_not_when_sampling():
    layer, x = _layer("deconv")
    exact = layer(x).asnumpy()
    set_compute_dtype(layer, "bfloat16")                       # training: float32 kernels
    np.testing.assert_array_equal(layer(x).asnumpy(), exact)
    set_compute_dtype(layer, "bfloat16", for_training=False)   # forward only: bfloat16
    low = layer(x).asnumpy()
    assert 0 < np.abs(low - exact).max() < 0.03 * np.abs(exact).max()


def test_loss_scaler_halves_on_overflow_and_doubles_after_a_window():
    s = LossScaler(scale=8, window=3)
    assert s.update(False) is False and s.scale == 4
    assert all(s.update(True) for _ in range(2)) and s.scale == 4
    assert s.update(True) and s.scale == 8 and s.good == 0
    t = LossScaler()
    t.load(json.loads(json.dumps(s.state())))
    assert t.state() == s.state()
    for _ in range(40):
        s.update(False)
    assert s.scale == s.low


def test_precision_choices_and_their_reasons(monkeypatch):
    with pytest.raises(MXGenError, match="float16 is half precision for GPUs"):
        explain_precision("float16", [mx.cpu()], "x")
    with pytest.raises(MXGenError, match="unknown dtype"):
        explain_precision("half", [mx.cpu()], "x")
    assert explain_precision("float32", [mx.cpu()], "x") == ("float32", "float32 given")
    monkeypatch.setattr(_env, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(MXGenError, match="neither AVX512_BF16 nor AMX"):
        explain_precision("bfloat16", [mx.cpu()], "x")
    dtype, reason = explain_precision("auto", [mx.cpu()], "x", "unused:target", {})
    assert dtype == "float32" and "neither AVX512_BF16 nor AMX" in reason


@needs_bf16
def test_onednn_held_below_bfloat16_is_refused_not_crashed(monkeypatch):
    """DNNL_MAX_CPU_ISA=AVX2 on a bfloat16 CPU: oneDNN's bfloat16 primitives
    would fail to build mid-run ("could not create a primitive descriptor")."""
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    with pytest.raises(MXGenError, match="oneDNN is held to AVX2"):
        explain_precision("bfloat16", [mx.cpu()], "x")
    assert explain_precision("auto", [mx.cpu()], "x", "unused:target", {})[0] == "float32"
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert explain_precision("bfloat16", [mx.cpu()], "x")[0] == "bfloat16"


@needs_bf16
def test_auto_measures_and_says_what_it_measured():
    dtype, reason = explain_precision("auto", [mx.cpu()], "sampling",
                                      "mxgen._timing:generator_dtype",
                                      {"image_size": 32, "latent_size": 16, "ngf": 8, "nc": 3,
                                       "batch": 4})
    assert dtype in ("float32", "bfloat16")
    assert "sampling in bfloat16" in reason and " ms" in reason


def _gan_step(dtype):
    mx.random.seed(3)
    cfg = DCGANConfig(image_size=32, latent_size=16, ngf=8, ndf=8)
    gen, disc, step = build_gan_step(cfg, 2e-4, 0.5, [mx.cpu()], dtype=dtype)
    real = mx.nd.random.uniform(-1, 1, shape=(8, 3, 32, 32))
    return gen, step, real


@needs_bf16
def test_a_bf16_gan_step_follows_float32():
    results = {}
    for dtype in ("float32", "bfloat16"):
        gen, step, real = _gan_step(dtype)
        before = {k: p.data().asnumpy().copy() for k, p in gen.collect_params().items()}
        sums = step(real).asnumpy()
        moved = [np.abs(p.data().asnumpy() - before[k]).max()
                 for k, p in gen.collect_params().items() if "weight" in k]
        results[dtype] = sums
        assert np.isfinite(sums).all() and min(moved) > 0
    np.testing.assert_allclose(results["bfloat16"], results["float32"], rtol=0.05)


def test_loss_scaling_changes_nothing_but_the_scale():
    """With a power-of-two loss scale, float32 gradients are scaled and
    unscaled exactly: a step with a scaler is bit for bit the step without."""
    params = {}
    for scaled in (False, True):
        gen, step, real = _gan_step("float32")
        if scaled:
            step.scaler = LossScaler(scale=2.0 ** 10)
        step(real).wait_to_read()
        params[scaled] = {k: p.data().asnumpy() for k, p in gen.collect_params().items()}
    for k in params[False]:
        np.testing.assert_array_equal(params[True][k], params[False][k], err_msg=k)


def test_an_overflowing_scaled_step_is_skipped_and_halves_the_scale():
    gen, step, real = _gan_step("float32")
    step.scaler = LossScaler(scale=2.0 ** 120)      # every scaled gradient overflows
    before = {k: p.data().asnumpy().copy() for k, p in gen.collect_params().items()}
    step(real).wait_to_read()
    assert step.scaler.scale == 2.0 ** 118             # halved by D's update and by G's
    for k, p in gen.collect_params().items():
        if p.grad_req != "null":                       # (batch norm's statistics move)
            np.testing.assert_array_equal(p.data().asnumpy(), before[k], err_msg=k)


def test_lm_step_loss_scaling_is_exact_and_overflow_is_not_a_bad_step():
    from mxgen.train.lm import build_lm_step
    from mxgen.train.text import TextTrainConfig
    cfg = TextTrainConfig(num_embed=8, num_hidden=16, num_layers=1, seq_len=5, batch_size=4,
                          rnn_impl="fused", dropout_impl="mxnet", dtype="float32",
                          dropout=0.0)
    data = np.random.RandomState(0).randint(0, 10, size=(6, 4))
    norms, params = {}, {}
    for scale in (None, 2.0 ** 8, 2.0 ** 120):
        mx.random.seed(1)
        model, step = build_lm_step(cfg.model_config(10), cfg, [mx.cpu()])
        step.scaler = scale and LossScaler(scale=scale)
        initial = [p.data().asnumpy().copy() for p in model.collect_params().values()]
        _, _, norms[scale] = step(data[:-1], data[1:], [model.begin_state(4)])
        params[scale] = [p.data().asnumpy() for p in model.collect_params().values()]
    assert norms[2.0 ** 8] == pytest.approx(norms[None], rel=1e-6)
    assert norms[2.0 ** 120] is None            # overflow: skipped, not counted as bad
    assert step.scaler.scale == 2.0 ** 119
    for k, exact in enumerate(params[None]):
        np.testing.assert_array_equal(params[2.0 ** 8][k], exact)
        np.testing.assert_array_equal(params[2.0 ** 120][k], initial[k])


def _gan_cfg(out, **kw):
    return GANTrainConfig(**dict(data="shapes", out=str(out), image_size=32, ngf=8, ndf=8,
                                 batch_size=16, epochs=2, progress=False, fid_samples=32,
                                 max_images=64, decode_workers=0, log_interval=2, seed=2,
                                 holdout=0, **kw))


@needs_bf16
def test_bf16_gan_resumes_exactly_and_its_checkpoint_is_float32(tmp_path):
    straight = train_gan(_gan_cfg(tmp_path / "a", dtype="bfloat16"), log=lambda *_: None)
    train_gan(_gan_cfg(tmp_path / "b", dtype="bfloat16", max_steps=3), log=lambda *_: None)
    # resumed without --dtype: the checkpoint's bfloat16 is kept
    train_gan(_gan_cfg(tmp_path / "b", resume=True), log=lambda *_: None)
    assert straight["step"] == 8
    for name in ("generator.params", "discriminator.params"):
        a = mx.nd.load("%s/%s" % (resolve(str(tmp_path / "a"), "latest"), name))
        b = mx.nd.load("%s/%s" % (resolve(str(tmp_path / "b"), "latest"), name))
        for key in a:
            assert a[key].dtype == np.float32
            np.testing.assert_array_equal(a[key].asnumpy(), b[key].asnumpy(), err_msg=key)
    config = json.load(open("%s/config.json" % resolve(str(tmp_path / "b"), "latest")))
    assert config["kernels"]["dtype"] == "bfloat16"
    loaded = load(str(tmp_path / "b"), family="dcgan")       # loads as a float32 model
    assert compute_dtype_of(loaded.model) == "float32"
    z = mx.nd.random.normal(shape=(2, 100, 1, 1))
    exact = loaded.model(z).asnumpy()
    set_compute_dtype(loaded.model, "bfloat16", for_training=False)
    low = loaded.model(z).asnumpy()
    assert 0 < np.abs(low - exact).max() < 0.1


@pytest.mark.skipif(not {"amx_bf16", "amx_tile"} <= (_env.cpu_flags() or set()),
                    reason="this CPU has no AMX")
def test_a_process_told_to_use_amx_asks_linux_for_the_tiles():
    """oneDNN 2.4 runs AMX kernels when DNNL_MAX_CPU_ISA allows them but never
    asks Linux for the tile state: a child that inherits the setting from an
    mxgen parent (or a user who sets it) must still get the state, by
    importing mxgen, or die with SIGILL at its first bfloat16 product."""
    import subprocess
    import sys
    code = ("import mxgen, mxnet as mx\n"
            "from mxgen.nn.precision import BFLOAT16\n"
            "a = mx.nd.amp_cast(mx.nd.ones((64, 64)), dtype=BFLOAT16)\n"
            "mx.nd.FullyConnected(a, a, num_hidden=64, no_bias=True).wait_to_read()\n"
            "print('ok')\n")
    env = dict(_env.child_env(), DNNL_MAX_CPU_ISA="AVX512_CORE_AMX", MXGEN_ONEDNN_AMX="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
