"""bfloat16 against float32, side by side in one run: the char-LSTM/GRU
training step (mxgen's native kernels in both precisions; the plain Gluon
model in float32 and under MXNet's AMP; PyTorch eager under autocast where
an interpreter with torch is given), generation at batch 1 and 64, a DCGAN
iteration and ``stylize --method net``.

The plain-model baselines (benchmarks/plain_lm.py) run in processes of their
own -- MXNet's AMP patches every op process-wide -- right after the in-process
cases, and are recorded beside them.  On a CPU without bfloat16 in hardware
the cases still run (emulated bfloat16 for mxgen's kernels, float32 for
oneDNN's), which is how the "auto keeps float32 there" decision is shown.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import pytest
from mxnet import nd

from mxgen import _native
from mxgen._env import child_env, cpu_model
from mxgen.nn.precision import bf16_cpu

from conftest import compare
from test_char_rnn import EMBED, HIDDEN, LAYERS, _batch

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = _native.available("mxgen_lstm")
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernels unavailable: %s"
                                  % (_native.status()[2],))


def _lm_step(mode, vocab_size, data, target, dtype, impl="native"):
    """train-text's step (LMStep) with dropout 0, in ``dtype``."""
    from mxgen.train.lm import build_lm_step
    from mxgen.train.text import TextTrainConfig
    cfg = TextTrainConfig(mode=mode, num_embed=EMBED, num_hidden=HIDDEN, num_layers=LAYERS,
                          dropout=0.0, seq_len=data.shape[0], batch_size=data.shape[1],
                          rnn_impl=impl, dropout_impl="mxnet", dtype=dtype, lr=1e-3)
    model, train_step = build_lm_step(cfg.model_config(vocab_size), cfg, [mx.cpu()])
    states = [[model.begin_state(data.shape[1])]]

    def step():
        _, states[0], _ = train_step(data, target, states[0])
    step.dtype, step.reason = model.dtype, model.dtype_reason
    return step


def _plain(framework, amp, mode, vocab, seq_len, batch, rounds):
    """tokens/s of benchmarks/plain_lm.py in a process of its own (None when
    that framework is not installed for the interpreter)."""
    python = sys.executable if framework == "gluon" else os.environ.get("MXGEN_TORCH_PYTHON")
    if python is None:
        try:
            import torch  # noqa: F401  (only whether it imports)
            python = sys.executable
        except ImportError:
            return None, "no torch here (set MXGEN_TORCH_PYTHON to an interpreter that has it)"
    cmd = [python, os.path.join(HERE, "plain_lm.py"), framework, "--mode", mode,
           "--vocab", str(vocab), "--embed", str(EMBED), "--hidden", str(HIDDEN),
           "--layers", str(LAYERS), "--seq-len", str(seq_len), "--batch", str(batch),
           "--rounds", str(rounds)] + (["--amp"] if amp else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=900)
    if done.returncode != 0:
        return None, "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["tokens_per_s"], result["what"]


def _bf16_gemm_peak():
    """The best bfloat16 GEMM here now (GFLOP/s, 2048^3, fastest of three):
    mxgen's on its bfloat16 path or oneDNN's (with AMX where mxgen enabled
    it), whichever is faster -- ``(peak, which)``."""
    from gemm_peak import best_gflops
    from mxgen.nn.precision import BFLOAT16
    if bf16_cpu() is not None:
        return None, None
    n = 2048
    a16, b16 = (mx.nd.amp_cast(mx.nd.random.normal(shape=(n, n)), dtype=BFLOAT16)
                for _ in range(2))
    found = {"onednn_fc_bf16": best_gflops(
        lambda: mx.nd.FullyConnected(a16, b16, no_bias=True, num_hidden=n).wait_to_read(),
        2.0 * n ** 3, 3)}
    if _native.bf16_hardware():
        # in a child process: mxgen's C entry run from this thread would start a second
        # OpenMP team beside the engine thread's, and the two would spin against each
        # other through every case that follows (measured: generation 7x slower)
        code = ("import sys; sys.path.insert(0, %r)\n"
                "from gemm_peak import best_gflops, mxgen_gemm_bf16\n"
                "print(best_gflops(mxgen_gemm_bf16(%d, %d, %d), %r, 3))"
                % (HERE, n, n, n, 2.0 * n ** 3))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=child_env(), timeout=300)
        if done.returncode == 0:
            found["mxgen_%s" % _native.isa()] = float(done.stdout.split()[-1])
    which = max(found, key=found.get)
    return found[which], which


@needs_native
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_train_step_bf16(benchmark, quick, text_corpus, mode):
    seq_len, batch = (50, 16) if quick else (100, 32)
    vocab_size, data, target = _batch(text_corpus, seq_len, batch)
    rounds, warmup = (3, 1) if quick else (12, 3)
    candidate = _lm_step(mode, vocab_size, data, target, "bfloat16")
    baselines = {"mxgen_float32": _lm_step(mode, vocab_size, data, target, "float32"),
                 "gluon_float32": _lm_step(mode, vocab_size, data, target, "float32",
                                           impl="fused")}
    cand, base = compare(benchmark, candidate, baselines, data.size, "tokens", rounds, warmup,
                         {"model": "%s %dx%d, embed %d, vocab %d, dropout 0"
                                   % (mode, LAYERS, HIDDEN, EMBED, vocab_size),
                          "shape": "seq %d x batch %d" % (seq_len, batch),
                          "dtype_reason": candidate.reason})
    info = benchmark.extra_info
    for name, framework, amp in (("plain_gluon_float32", "gluon", False),
                                 ("plain_gluon_amp_bf16", "gluon", True),
                                 ("torch_float32", "torch", False),
                                 ("torch_autocast_bf16", "torch", True)):
        per_s, what = (None, "not run in quick mode") if quick else \
            _plain(framework, amp, mode, vocab_size, seq_len, batch, rounds)
        info["baseline_%s_what" % name] = what
        if per_s:
            info["baseline_%s_per_s" % name] = round(per_s, 1)
            info["ratio_vs_%s" % name] = round(cand / per_s, 3)
            base[name] = per_s
    best = max(v for k, v in base.items() if k != "mxgen_float32")
    info["ratio_vs_best_baseline"] = round(cand / best, 3)
    gates = {"lstm": 4, "gru": 3}[mode]
    fwd = sum(2 * gates * HIDDEN * ((EMBED if i == 0 else HIDDEN) + HIDDEN)
              for i in range(LAYERS)) + 2 * HIDDEN * vocab_size
    info["gflop_per_s"] = round(cand * 3 * fwd / 1e9, 1)
    peak, which = _bf16_gemm_peak()
    if peak:
        info["bf16_peak_gflop_per_s_nearby"] = round(peak, 1)
        info["bf16_peak_from"] = which
        info["fraction_of_bf16_peak"] = round(cand * 3 * fwd / 1e9 / peak, 3)


@needs_native
@pytest.mark.parametrize("batch", [1, 64])
def test_generation_bf16(benchmark, quick, text_corpus, batch):
    from mxgen._timing import _generator
    length = 64 if quick else 256
    run = _generator("lstm", 85, EMBED, HIDDEN, LAYERS, batch, length)
    rounds, warmup = (3, 1) if quick else (9, 2)
    compare(benchmark, lambda: run(True, "bfloat16"),
            {"float32": lambda: run(True, "float32")}, batch * length, "chars", rounds, warmup,
            {"model": "lstm %dx%d, embed %d, vocab 85" % (LAYERS, HIDDEN, EMBED),
             "shape": "batch %d x %d chars (native op)" % (batch, length)})


def _gan_step(dtype, batch):
    from mxgen.models.dcgan import DCGANConfig
    from mxgen.train.gan import build_gan_step
    mx.random.seed(0)
    step = build_gan_step(DCGANConfig(), 2e-4, 0.5, [mx.cpu()], dtype=dtype)[2]
    real = nd.random.uniform(-1, 1, shape=(batch, 3, 64, 64))
    return lambda: step(real)


def test_dcgan_iteration_bf16(benchmark, quick):
    batch = 16 if quick else 64
    rounds, warmup = (3, 1) if quick else (8, 2)
    low = "bfloat16" if bf16_cpu() is None else "float32"
    compare(benchmark, _gan_step(low, batch), {"float32": _gan_step("float32", batch)}, batch,
            "images", rounds, warmup,
            {"model": "DCGAN 64x64, ngf/ndf 64", "shape": "batch %d" % batch,
             "candidate_dtype": low, "onednn": os.environ.get("DNNL_MAX_CPU_ISA", "default"),
             "note": "bfloat16 convolutions; the generator's transposed convolutions stay"
                     " float32 in training (MXNet 1.9.1's bfloat16 deconvolution backward"
                     " crashes)"})


def _stylizer(dtype, size):
    from mxgen.models.style import TransformerNet
    from mxgen.nn.precision import set_compute_dtype
    mx.random.seed(0)
    net = TransformerNet()
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize(static_alloc=True)
    set_compute_dtype(net, dtype, for_training=False)
    x = nd.random.uniform(shape=(1, 3, size, size))
    return lambda: net(x)


def test_stylize_net_bf16(benchmark, quick):
    size = 256 if quick else 512
    rounds, warmup = (3, 1) if quick else (8, 2)
    low = "bfloat16" if bf16_cpu() is None else "float32"
    compare(benchmark, _stylizer(low, size), {"float32": _stylizer("float32", size)}, 1,
            "images", rounds, warmup,
            {"model": "style transformer, width 32, 5 residual", "shape": "%dx%d" % (size, size),
             "candidate_dtype": low, "device": "cpu (%s)" % cpu_model()})
