"""What ``'auto'`` times: each native op against MXNet's own, on one shape.

:mod:`mxgen._calibrate` runs these in a child process (by name, e.g.
``"mxgen._timing:recurrent"``) with the shape as keyword arguments; each
returns ``(native ms, fallback ms)``, the fastest of interleaved rounds.
Nothing in mxgen imports this module: it may import anything.
"""
import time

import mxnet as mx
from mxnet import autograd, gluon

__all__ = ["interleaved_ms", "recurrent", "dropout", "generation"]


def interleaved_ms(fns, rounds=7, warmup=2):
    """Fastest ms of each zero-argument function, run round-robin: a busy
    neighbour or a slow phase of the machine only ever adds time, and hits
    the candidates alike.  Each function must block until done."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [min(t) * 1e3 for t in times]


def recurrent(mode, input_size, num_hidden, num_layers, seq_len, batch):
    """A training step through a fresh stack of layers of this shape,
    ``(native, fused)``: forward, backward and a weight update, as in
    training (without the update oneDNN's fused op would keep its weights
    packed between calls and look faster than it is in training)."""
    from .nn.rnn import FusedRNN
    x = mx.nd.random.uniform(-1, 1, shape=(seq_len, batch, input_size))
    runs = []
    for impl in ("native", "fused"):
        layers = gluon.nn.HybridSequential()
        for i in range(num_layers):
            layers.add(FusedRNN(mode, num_hidden, input_size if i == 0 else num_hidden))
        layers.initialize(mx.init.Uniform(0.1), ctx=mx.cpu())
        for layer in layers:
            layer.set_impl(impl)
            layer.hybridize(static_alloc=True)
        trainer = gluon.Trainer(layers.collect_params(), "sgd", {"learning_rate": 1e-6})
        states = layers[0].begin_state(batch)

        def run(layers=layers, states=states, trainer=trainer):
            with autograd.record():
                h = x
                for layer in layers:
                    h, _ = layer(h, *states)
                loss = h.sum()
            loss.backward()
            trainer.step(1)
            mx.nd.waitall()
        runs.append(run)
    return tuple(interleaved_ms(runs))


def dropout(shape, p):
    """Dropout forward+backward on ``shape``, ``(native, MXNet's)``."""
    from .nn.dropout import dropout as apply, training_probe
    x = mx.nd.random.normal(shape=shape)
    x.attach_grad()

    def run(native):
        with autograd.record():
            y = apply(mx.nd, x, p, training_probe(mx.nd) if native else None)
        y.backward()
        mx.nd.waitall()
    return tuple(interleaved_ms([lambda: run(True), lambda: run(False)], rounds=9))


def generation(mode, vocab_size, num_embed, num_hidden, num_layers, batch, length=64):
    """``length`` sampled characters for ``batch`` rows, ``(native op,
    hybridized loop)`` (random weights)."""
    from .data.vocab import Vocab
    from .generation import generate
    from .models.char_rnn import CharRNN
    vocab = Vocab({chr(0x100 + i) for i in range(vocab_size)})
    model = CharRNN(vocab_size, num_embed, num_hidden, num_layers, dropout=0.0, mode=mode)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    prompt = vocab.decode([0, 1, 2][:vocab_size])
    return tuple(interleaved_ms([
        lambda flag=flag: generate(model, vocab, prompt, length, num_samples=batch, seed=0,
                                   native=flag) for flag in (True, False)]))
