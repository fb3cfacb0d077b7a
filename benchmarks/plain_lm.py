"""The baselines of the precision benchmark, each in a process of its own:
a plain character LSTM/GRU language-model training step as a user would
write it without mxgen, timed in

    python benchmarks/plain_lm.py gluon [--amp]   # hybridized Gluon, float32 or MXNet AMP bf16
    python benchmarks/plain_lm.py torch [--amp]   # PyTorch eager, float32 or autocast bf16

``--amp`` turns on the framework's own mixed precision: MXNet's
``contrib.amp.init(target_dtype='bfloat16')`` (process-wide, which is why
this runs apart) or ``torch.autocast('cpu', dtype=torch.bfloat16)``.  Both
steps are embedding, a 2-layer fused recurrent layer, a dense decoder,
softmax cross-entropy summed, backward, global-norm clipping and Adam, on
random ids of the given vocabulary.  Prints one JSON line: tokens/s (median
of the timed steps) and what ran.  PyTorch is a benchmark extra, never an
mxgen dependency: run it with an interpreter that has torch (e.g. a venv of
its own, passed to the benchmark as MXGEN_TORCH_PYTHON).
"""
import argparse
import json
import os
import time


def gluon_step(args):
    import mxnet as mx
    from mxnet import autograd, gluon
    if args.amp:
        from mxnet.contrib import amp
        amp.init(target_dtype="bfloat16")
    layer = {"lstm": gluon.rnn.LSTM, "gru": gluon.rnn.GRU}[args.mode]

    class LM(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.embedding = gluon.nn.Embedding(args.vocab, args.embed)
                self.rnn = layer(args.hidden, num_layers=args.layers, input_size=args.embed)
                self.decoder = gluon.nn.Dense(args.vocab, flatten=False, in_units=args.hidden)

        def hybrid_forward(self, F, x, *states):
            out, states = self.rnn(self.embedding(x), list(states))
            return self.decoder(out), states

    model = LM()
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = mx.nd.random.randint(0, args.vocab, shape=(args.seq_len + 1, args.batch))
    data, target = rng[:-1].astype("float32"), rng[1:].astype("float32")
    states = model.rnn.begin_state(batch_size=args.batch)
    params = [p for p in model.collect_params().values() if p.grad_req != "null"]

    def step():
        with autograd.record():
            out, _ = model(data, *states)
            loss = loss_fn(out, target).sum()
        loss.backward()
        gluon.utils.clip_global_norm([p.grad() for p in params], 5.0 * data.size)
        trainer.step(data.size)
        mx.nd.waitall()
    return step, "mxnet %s, %s" % (mx.__version__, "AMP bfloat16 (contrib.amp.init)"
                                   if args.amp else "float32")


def torch_step(args):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[args.mode]

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(args.vocab, args.embed)
            self.rnn = layer(args.embed, args.hidden, num_layers=args.layers)
            self.decoder = torch.nn.Linear(args.hidden, args.vocab)

        def forward(self, x):
            out, _ = self.rnn(self.embedding(x))
            return self.decoder(out)

    model = LM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, args.vocab, (args.seq_len + 1, args.batch))
    data, target = ids[:-1], ids[1:]

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
            out = model(data)
        loss = torch.nn.functional.cross_entropy(out.float().reshape(-1, args.vocab),
                                                 target.reshape(-1), reduction="sum")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0 * data.numel())
        opt.step()
    return step, "torch %s, %s" % (torch.__version__, "autocast bfloat16" if args.amp
                                   else "float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=("gluon", "torch"))
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--mode", default="lstm", choices=("lstm", "gru"))
    for name, default in (("vocab", 85), ("embed", 64), ("hidden", 256), ("layers", 2),
                          ("seq-len", 100), ("batch", 32), ("rounds", 10), ("warmup", 3)):
        parser.add_argument("--" + name, type=int, default=default)
    args = parser.parse_args()
    step, what = (gluon_step if args.framework == "gluon" else torch_step)(args)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"tokens_per_s": args.seq_len * args.batch / median, "what": what}))


if __name__ == "__main__":
    main()
