"""Training on variable-length samples: N length buckets vs one bucket vs
fixed-length streaming, on the embedded list corpus (the standard library's
function names).  Throughput counts real tokens only (characters and end
marks, never padding); the padding ratio counts every computed position,
the filler columns of each bucket's last batch included."""
import mxnet as mx
import numpy as np
from mxnet import nd

from mxgen.data.batchify import BPTTBatches
from mxgen.data.bucket import BucketIterator, padding_optimal_keys, token_batch_sizes
from mxgen.data.corpus import stdlib_names
from mxgen.data.vocab import Vocab
from mxgen.distributed import Cluster
from mxgen.train.lm import build_lm_step
from mxgen.train.text import TextTrainConfig

from conftest import compare

BUCKETS = 12                     # train-text's default


def _cfg(batch, seq_len=100):
    # the model train-text trains by default; kernels as it picks them
    return TextTrainConfig(batch_size=batch, seq_len=seq_len, max_len=256, lr=1e-3)


def _bucketed(vocab, samples, cfg, buckets, batches):
    """The --samples step over a fixed list of ``batches`` batches of an
    epoch's order; returns (a call running them, its real tokens, the
    epoch's padding ratio, the step)."""
    keys = padding_optimal_keys([len(s) + 1 for s in samples], buckets)    # as train-text
    sizes = token_batch_sizes(keys, cfg.batch_size * cfg.seq_len)       # as train-text does
    it = BucketIterator([vocab.encode(s) for s in samples], vocab.eos_id, sizes,
                        bucket_keys=keys, pad_last=True, seed=1)
    chosen = [(nd.array(d), nd.array(t), nd.array(m), float(m.sum()))
              for _, (d, t, m) in zip(range(batches), it.epoch(0))]
    model, step = build_lm_step(cfg.model_config(len(vocab)), cfg, [mx.cpu()],
                                Cluster(None, [mx.cpu()]), static_shape=True,
                                measure=(keys[len(keys) // 2], sizes[len(keys) // 2]))

    def run():
        for d, t, m, real in chosen:
            step(d, t, [model.begin_state(d.shape[1])], m, real)
    return run, sum(r for _, _, _, r in chosen), it.stats()["padding_ratio"], step


def _streaming(vocab, samples, cfg, batches):
    text = "".join(s + "\n" for s in samples)
    stream = BPTTBatches(vocab.encode(text.replace("\n", Vocab.EOS)), cfg.batch_size,
                         cfg.seq_len)
    chosen = [tuple(nd.array(a) for a in stream[i]) for i in range(min(batches, len(stream)))]
    model, step = build_lm_step(cfg.model_config(len(vocab)), cfg, [mx.cpu()])
    states = [[model.begin_state(cfg.batch_size)]]

    def run():
        for d, t in chosen:
            _, states[0], _ = step(d, t, states[0])
    return run, sum(d.size for d, _ in chosen)


def test_buckets_vs_streaming(benchmark, quick):
    samples = stdlib_names()
    vocab = Vocab.from_text("".join(samples), eos=Vocab.EOS)
    batch = 32
    cfg = _cfg(batch)
    per_call = 4 if quick else 16                        # batches per timed call
    rounds, warmup = (3, 1) if quick else (7, 1)
    run_n, real_n, pad_epoch_n, step_n = _bucketed(vocab, samples, cfg, BUCKETS, per_call)
    run_1, real_1, pad_epoch_1, _ = _bucketed(vocab, samples, cfg, 1, per_call)
    # streaming in train-text's default windows: batch x seq_len positions a
    # batch, the budget of a bucketed batch
    run_s, tokens_s = _streaming(vocab, samples, cfg, max(1, int(per_call * real_n)
                                                          // (cfg.seq_len * batch)))
    cand, base = compare(benchmark, run_n, {"one_bucket": run_1, "streaming": run_s},
                         real_n, "tokens", rounds, warmup,
                         {"corpus": "stdlib-names (%d samples, mean %.1f chars)"
                                    % (len(samples), np.mean([len(s) for s in samples])),
                          "batch": batch, "buckets": BUCKETS,
                          "padding_buckets": round(pad_epoch_n, 4),
                          "padding_one_bucket": round(pad_epoch_1, 4)})
    info = benchmark.extra_info
    info["graphs"] = len(step_n.graphs)
    # the baselines processed other token counts per call: rescale them
    for name, work in (("one_bucket", real_1), ("streaming", tokens_s)):
        per_s = base[name] * work / real_n
        info["baseline_%s_per_s" % name] = round(per_s, 1)
        info["ratio_vs_%s" % name] = round(cand / per_s, 3)
    assert len(step_n.graphs) <= BUCKETS
