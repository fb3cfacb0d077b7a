"""Generation throughput: stateful hybridized steps vs the tutorial's window method."""
import mxnet as mx
import pytest

from mxgen.data.vocab import Vocab
from mxgen.generation import generate
from mxgen.models import CharRNN

from conftest import compare

# A prompt of at least the window length, so every window step reads 100 chars.
PROMPT = ("Supposing that Truth is a woman--what then? Is there not ground for suspecting "
          "that all philosophers, in so far as they have been dogmatists")


@pytest.fixture(scope="module")
def lm():
    vocab = Vocab(set(PROMPT) | {chr(32 + i) for i in range(85)})
    model = CharRNN(len(vocab), 64, 256, 2, dropout=0.0)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model, vocab


def test_generate_batch1(benchmark, quick, lm):
    model, vocab = lm
    length = 200 if quick else 1000
    window_length = 20 if quick else 100     # the window method is slow: time fewer chars
    rounds, warmup = (2, 1) if quick else (5, 1)
    window_rate = {}

    def window():
        generate(model, vocab, PROMPT, window_length, temperature=0, method="window", window=100)

    cand, base = compare(
        benchmark, lambda: generate(model, vocab, PROMPT, length, temperature=0),
        {"window": window}, length, "chars", rounds, warmup,
        {"model": "lstm 2x256", "batch": 1, "length": length, "window": 100})
    # the window baseline generated window_length chars per call, not `length`
    window_rate["chars_per_s"] = base["window"] * window_length / length
    benchmark.extra_info["baseline_window_per_s"] = round(window_rate["chars_per_s"], 1)
    benchmark.extra_info["ratio_vs_window"] = round(cand / window_rate["chars_per_s"], 3)


def test_generate_batch64(benchmark, quick, lm):
    model, vocab = lm
    length = 200 if quick else 1000
    rounds, warmup = (2, 1) if quick else (5, 1)

    def batch1():
        generate(model, vocab, "T", length, temperature=1.0, seed=0)

    compare(benchmark,
            lambda: generate(model, vocab, "T", length, temperature=1.0, num_samples=64, seed=0),
            {"batch1": batch1}, length * 64, "chars", rounds, warmup,
            {"model": "lstm 2x256", "batch": 64, "length": length})
    # batch1 baseline did `length` chars per call, not length * 64
    info = benchmark.extra_info
    info["baseline_batch1_per_s"] = round(info["baseline_batch1_per_s"] / 64, 1)
    info["ratio_vs_batch1"] = round(info["candidate_per_s"] / info["baseline_batch1_per_s"], 3)
