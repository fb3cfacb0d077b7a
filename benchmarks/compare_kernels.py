"""The char-LSTM training step under each choice of recurrent and dropout
kernel, interleaved round by round in one process (machines drift; ratios
from one run are what to read).

    python benchmarks/compare_kernels.py [--rounds 25] [--mode lstm]
    MXGEN_ISA=avx2 DNNL_MAX_CPU_ISA=AVX2 python benchmarks/compare_kernels.py   # both held to AVX2

Each configuration is the step ``mxgen train-text`` runs (hybridized LMLoss,
backward, Adam), seq 100 x batch 32, 2x256, embedding 64, vocab 85.  Prints
the fastest and the median step per configuration.
"""
import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxgen  # noqa: E402,F401  (threads before mxnet)
import mxnet as mx  # noqa: E402
from mxnet import nd  # noqa: E402

from mxgen.errors import MXGenError  # noqa: E402
from mxgen.train.lm import build_lm_step  # noqa: E402
from mxgen.train.text import TextTrainConfig  # noqa: E402

T, N, V = 100, 32, 85


def make_step(mode, rnn_impl, dropout_impl):
    """``mxgen train-text``'s step with the given kernels."""
    mx.random.seed(1)
    cfg = TextTrainConfig(mode=mode, num_embed=64, num_hidden=256, num_layers=2, dropout=0.2,
                          seq_len=T, batch_size=N, rnn_impl=rnn_impl, dropout_impl=dropout_impl,
                          lr=1e-3)
    model, train_step = build_lm_step(cfg.model_config(V), cfg, [mx.cpu()])
    data = nd.random.randint(0, V, shape=(T, N)).astype("float32")
    states = [model.begin_state(N)]

    def step():
        train_step(data, data, states)
        nd.waitall()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="lstm", choices=["lstm", "gru"])
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    configs, steps = [], []
    for rnn_impl, dropout_impl in itertools.product(("fused", "native"), ("mxnet", "native")):
        try:
            steps.append(make_step(args.mode, rnn_impl, dropout_impl))
        except MXGenError as err:
            print("skipping %s + %s: %s" % (rnn_impl, dropout_impl, err))
            continue
        configs.append((rnn_impl, dropout_impl))
    for step in steps:
        for _ in range(3):
            step()
    times = [[] for _ in steps]
    for _ in range(args.rounds):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - start)
    from mxgen import _native
    print("char-%s 2x256, seq %d x batch %d, OMP_NUM_THREADS=%s; mxgen kernels: %s;"
          " oneDNN held to: %s" % (args.mode, T, N, os.environ.get("OMP_NUM_THREADS"),
                                   _native.isa(), os.environ.get("DNNL_MAX_CPU_ISA", "all")))
    print("%-8s %-8s %9s %9s %10s" % ("rnn", "dropout", "min ms", "median ms", "tokens/s"))
    for (rnn_impl, dropout_impl), ts in zip(configs, times):
        ts = sorted(ts)
        print("%-8s %-8s %9.1f %9.1f %10.0f" % (rnn_impl, dropout_impl, ts[0] * 1e3,
                                                 ts[len(ts) // 2] * 1e3, T * N / ts[0]))


if __name__ == "__main__":
    main()
