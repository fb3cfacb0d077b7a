"""Where the time of one char-LSTM training step goes (own timers; the pip
mxnet wheel is built without MXNet's profiler).

    python benchmarks/profile_char_rnn.py [--mode lstm] [--rounds 10]

Times, each synced with waitall and as a median: the whole step as
``mxgen.train.text`` runs it, then its parts run alone: the recurrent layers
forward+backward, embedding + decoder + loss forward+backward, the global-norm
reduction with its host read, and the Adam update.  Prints ms, share of the
step, FLOPs and GFLOP/s next to a measured matrix-multiply peak; then each
recurrent layer's operator alone (forward, and backward as the difference).
Parts run alone carry their own graph overheads, so they need not sum to the
step.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxgen  # noqa: E402,F401  (threads before mxnet)
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

from mxgen.nn.dropout import dropout, training_probe  # noqa: E402
from mxgen.train.common import global_grad_norm  # noqa: E402
from mxgen.train.lm import build_lm_step  # noqa: E402
from mxgen.train.text import TextTrainConfig  # noqa: E402


def median_ms(fn, rounds, warmup=3):
    for _ in range(warmup):
        fn()
        nd.waitall()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        nd.waitall()
        times.append(time.perf_counter() - start)
    return sorted(times)[rounds // 2] * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="lstm", choices=["lstm", "gru"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--rnn-impl", default="auto", choices=["auto", "fused", "native"],
                        help="recurrent kernel (default: auto, as mxgen train-text)")
    parser.add_argument("--dropout-impl", default="auto", choices=["auto", "mxnet", "native"],
                        help="dropout kernel (default: auto, as mxgen train-text)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="what the recurrent layers multiply in (default: auto, as mxgen"
                             " train-text)")
    args = parser.parse_args()
    # the machine's matrix-multiply peak: the fastest of 15 2048^3 FullyConnected calls
    a = nd.random.normal(shape=(2048, 2048))
    b = nd.random.normal(shape=(2048, 2048))
    peak_ms = min(median_ms(lambda: nd.FullyConnected(a, b, no_bias=True, num_hidden=2048), 1)
                  for _ in range(15))
    peak = 2 * 2048 ** 3 / peak_ms / 1e6
    T, N, V, E, H, L = 100, 32, 85, 64, 256, 2
    gates = {"lstm": 4, "gru": 3}[args.mode]
    cfg = TextTrainConfig(mode=args.mode, num_embed=E, num_hidden=H, num_layers=L, dropout=0.2,
                          seq_len=T, batch_size=N, rnn_impl=args.rnn_impl,
                          dropout_impl=args.dropout_impl, dtype=args.dtype, lr=1e-3)
    model, train_step = build_lm_step(cfg.model_config(V), cfg, [mx.cpu()])
    impl, drop_impl = model.rnn_impl, model.dropout_impl
    print("recurrent kernel: %s; dropout: %s; dtype: %s (%s)" % (impl, drop_impl, model.dtype,
                                                            model.dtype_reason))

    def probe(F):
        return training_probe(F) if drop_impl == "native" else None
    loss_block, trainer = train_step.loss_block, train_step.trainer
    params = train_step.params
    data = nd.random.randint(0, V, shape=(T, N)).astype("float32")
    target = nd.random.randint(0, V, shape=(T, N)).astype("float32")
    states = model.begin_state(N)

    def full_step():                     # mxgen train-text's own step
        train_step(data, target, [states])

    # the recurrent layers alone (same blocks, same weights)
    x_in = nd.random.normal(shape=(T, N, E))
    x_in.attach_grad()

    class Layers(gluon.HybridBlock):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def hybrid_forward(self, F, x, *s):
            pr = probe(F)
            for i, layer in enumerate(self.layers):
                x, _ = layer(x, *s[i * model.states_per_layer:(i + 1) * model.states_per_layer])
                x = dropout(F, x, 0.2, pr, salt=i + 1)
            return x
    layers = Layers(model.layers)
    layers.hybridize(static_alloc=True)

    def rnn_only():
        with autograd.record():
            out = layers(x_in, *states)
        out.backward()

    h_in = nd.random.normal(shape=(T, N, H))
    h_in.attach_grad()

    class Head(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.embedding, self.decoder = model.embedding, model.decoder

        def hybrid_forward(self, F, ids, h, target):
            emb = dropout(F, self.embedding(ids), 0.2, probe(F), salt=0)
            logits = self.decoder(h)
            nll = -F.pick(F.log_softmax(logits, axis=-1), target, axis=-1)
            return F.sum(nll) + 0 * F.sum(emb)
    head = Head()
    head.hybridize(static_alloc=True)

    def head_only():
        with autograd.record():
            out = head(data, h_in, target)
        out.backward()

    full_step()                          # make sure gradients exist for the parts below

    def norm_only():
        global_grad_norm(params, mx.cpu()).asscalar()

    def update_only():
        for p in params:                 # reuse the last gradients: mark them fresh
            for arr in p.list_data():
                arr._fresh_grad = True
        trainer.update(T * N)

    def forward_backward():
        with autograd.record():
            loss, _ = loss_block(data, target, *states)
        loss.backward()


    rnn_flops = 3 * sum(2 * gates * H * ((E if i == 0 else H) + H) for i in range(L)) * T * N
    head_flops = 3 * 2 * H * V * T * N
    total = median_ms(full_step, args.rounds)
    fwd_bwd = median_ms(forward_backward, args.rounds)
    norm_ms = median_ms(norm_only, args.rounds)
    rows = [("full step", total, rnn_flops + head_flops),
            ("  model fwd+bwd (loss graph)", fwd_bwd, rnn_flops + head_flops),
            ("    recurrent layers alone", median_ms(rnn_only, args.rounds), rnn_flops),
            ("    embedding+decoder+loss alone", median_ms(head_only, args.rounds), head_flops),
            ("  global norm + host read", norm_ms, 0),
            ("  Adam update", median_ms(update_only, args.rounds), 0)]
    print("char-%s %dx%d, embed %d, vocab %d, seq %d x batch %d, OMP_NUM_THREADS=%s"
          % (args.mode, L, H, E, V, T, N, os.environ.get("OMP_NUM_THREADS")))
    print("matrix-multiply peak (2048^3 FullyConnected): %.0f GFLOP/s" % peak)
    print("%-32s %9s %7s %10s %9s %7s" % ("part", "ms", "share", "GFLOP", "GFLOP/s", "% peak"))
    for name, ms, flops in rows:
        rate = flops / ms / 1e6 if flops else 0
        print("%-32s %9.1f %6.0f%% %10.2f %9.0f %6.0f%%"
              % (name, ms, 100 * ms / total, flops / 1e9, rate, 100 * rate / peak))
    print("tokens/s: %.0f; MFLOP/token: %.2f" % (T * N / total * 1e3,
                                                 (rnn_flops + head_flops) / (T * N) / 1e6))

    # each recurrent layer's operator alone, eager, fastest of the rounds
    print("\none %s operator per layer, alone (fastest of %d):" % (impl, args.rounds))
    for i, layer in enumerate(model.layers):
        in_size = E if i == 0 else H
        x_l = nd.random.normal(shape=(T, N, in_size))
        x_l.attach_grad()
        st = layer.begin_state(N)
        dy = nd.random.normal(shape=(T, N, H))

        def fwd(train):
            with autograd.record():
                out, _ = layer(x_l, *st)
            if train:
                out.backward(dy)
        times = {}
        for train in (False, True):
            fwd(train)
            nd.waitall()
            best = float("inf")
            for _ in range(args.rounds):
                start = time.perf_counter()
                fwd(train)
                nd.waitall()
                best = min(best, time.perf_counter() - start)
            times[train] = best * 1e3
        flops = 2 * gates * H * (in_size + H) * T * N
        print("  layer %d (input %d): forward %.1f ms (%.0f GFLOP/s), backward %.1f ms"
              " (%.0f GFLOP/s)" % (i + 1, in_size, times[False], flops / times[False] / 1e6,
                                   times[True] - times[False],
                                   2 * flops / (times[True] - times[False]) / 1e6))


if __name__ == "__main__":
    main()
