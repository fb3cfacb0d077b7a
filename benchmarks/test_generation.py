"""Generation throughput: the native operator and the hybridized per-step loop
against the tutorial's window method, at batch 1 and batch 64; the native
sampler against the equivalent chain of MXNet operators."""
import mxnet as mx
import pytest

from mxgen import _native
from mxgen.data.vocab import Vocab
from mxgen.generation import Sampler, generate, generation_kernel
from mxgen.models import CharRNN

from conftest import compare, record_compute

# A prompt of at least the window length, so every window step reads 100 chars.
PROMPT = ("Supposing that Truth is a woman--what then? Is there not ground for suspecting "
          "that all philosophers, in so far as they have been dogmatists")
NATIVE = _native.available()


@pytest.fixture(scope="module")
def lm():
    vocab = Vocab(set(PROMPT) | {chr(32 + i) for i in range(85)})
    model = CharRNN(len(vocab), 64, 256, 2, dropout=0.0)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model, vocab


def _kernel(model, batch):
    """What generate(native=None) runs for this batch, and why."""
    if not NATIVE:
        return {"candidate": "hybridized loop", "candidate_reason": "native kernels unavailable"}
    native, _, reason = generation_kernel(model, batch, dtype="float32")
    return {"candidate": "native op" if native else "hybridized loop",
            "candidate_reason": reason}


def _rescale(info, name, factor):
    """A baseline that did ``factor`` times less work per call than the candidate."""
    info["baseline_%s_per_s" % name] = round(info["baseline_%s_per_s" % name] * factor, 1)
    info["ratio_vs_%s" % name] = round(info["candidate_per_s"] / info["baseline_%s_per_s" % name],
                                       3)


def test_generate_batch1(benchmark, quick, lm):
    model, vocab = lm
    length = 200 if quick else 1000
    window_length = 20 if quick else 100     # the window method is slow: time fewer chars
    rounds, warmup = (2, 1) if quick else (5, 1)
    baselines = {"window": lambda: generate(model, vocab, PROMPT, window_length, temperature=0,
                                            method="window", window=100)}
    if NATIVE:
        baselines["hybrid_loop"] = lambda: generate(model, vocab, PROMPT, length, temperature=0,
                                                    native=False)
    compare(benchmark, lambda: generate(model, vocab, PROMPT, length, temperature=0),
            baselines, length, "chars", rounds, warmup,
            dict(_kernel(model, 1), model="lstm 2x256", batch=1, length=length, window=100))
    _rescale(benchmark.extra_info, "window", window_length / length)


def test_generate_batch64(benchmark, quick, lm):
    model, vocab = lm
    length = 200 if quick else 1000
    rounds, warmup = (2, 1) if quick else (5, 1)
    baselines = {"batch1": lambda: generate(model, vocab, "T", length, temperature=1.0, seed=0)}
    if NATIVE:
        baselines["hybrid_loop"] = lambda: generate(model, vocab, "T", length, temperature=1.0,
                                                    num_samples=64, seed=0, native=False)
    compare(benchmark,
            lambda: generate(model, vocab, "T", length, temperature=1.0, num_samples=64, seed=0),
            baselines, length * 64, "chars", rounds, warmup,
            dict(_kernel(model, 64), model="lstm 2x256", batch=64, length=length))
    _rescale(benchmark.extra_info, "batch1", 1 / 64)
    # per character: each layer's gate products and the decoder (2 FLOPs per weight)
    flops = 2 * (4 * 256 * (64 + 256) + 4 * 256 * (256 + 256) + 256 * len(vocab))
    benchmark.extra_info["mflop_per_char"] = round(flops / 1e6, 3)
    record_compute(benchmark, benchmark.extra_info["candidate_per_s"], flops)


@pytest.mark.skipif(not NATIVE, reason="native kernels unavailable")
@pytest.mark.parametrize("batch", [1, 64])
def test_sampler_op(benchmark, quick, batch):
    logits = mx.nd.random.normal(shape=(batch, 85))
    chain = Sampler(temperature=0.8, top_k=20, top_p=0.9)
    chain.hybridize(static_alloc=True)
    calls = 50 if quick else 500

    def native():
        for _ in range(calls):
            out = mx.nd.mxgen_sample(logits, temperature=0.8, top_k=20, top_p=0.9)
        return out

    def mxnet_chain():
        for _ in range(calls):
            out = chain(logits)
        return out
    rounds, warmup = (2, 1) if quick else (7, 2)
    compare(benchmark, native, {"mxnet_ops": mxnet_chain}, calls * batch, "draws", rounds,
            warmup, {"batch": batch, "vocab": 85, "settings": "T 0.8, top-k 20, top-p 0.9"})
