"""Data pipeline throughput and bucket padding on a real variable-length corpus."""
import numpy as np

from mxgen.data.batchify import BPTTBatches
from mxgen.data.bucket import BucketIterator
from mxgen.data.vocab import Vocab

from conftest import compare


def test_bptt_batches(benchmark, quick, text_corpus):
    vocab = Vocab.from_text(text_corpus)
    ids = vocab.encode(text_corpus)

    def candidate():
        batches = BPTTBatches(ids, 32, 100)
        for data, target in batches:
            pass
        return batches

    def naive():                         # a Python loop building each (T, N) window
        n = len(ids) // 32
        for start in range(0, n - 101, 100):
            np.array([[ids[b * n + start + t] for b in range(32)] for t in range(100)])

    rounds, warmup = (2, 1) if quick else (5, 1)
    tokens = BPTTBatches(ids, 32, 100).num_tokens
    compare(benchmark, candidate, {"python_loop": naive}, tokens, "tokens", rounds, warmup,
            {"shape": "seq 100 x batch 32", "corpus_chars": len(ids)})


def test_bucket_iterator(benchmark, quick, text_corpus):
    lines = [l for l in text_corpus.split("\n") if l]
    vocab = Vocab.from_text("".join(lines), eos=Vocab.EOS)
    samples = [vocab.encode(s) for s in lines]
    bucketed = BucketIterator(samples, vocab.eos_id, 32, num_buckets=10)
    single = BucketIterator(samples, vocab.eos_id, 32, num_buckets=1)

    def run(it):
        def call():
            for _ in it.epoch(0):
                pass
        return call

    rounds, warmup = (2, 1) if quick else (5, 1)
    compare(benchmark, run(bucketed), {"one_bucket": run(single)}, len(samples), "samples",
            rounds, warmup, {"batch": 32, "buckets": 10, "samples": len(samples)})
    info = benchmark.extra_info
    info["padding_ratio_10_buckets"] = round(bucketed.stats()["padding_ratio"], 4)
    info["padding_ratio_1_bucket"] = round(single.stats()["padding_ratio"], 4)
