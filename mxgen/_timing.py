"""What ``'auto'`` times: each native op against MXNet's own, on one shape.

:mod:`mxgen._calibrate` runs these in a child process (by name, e.g.
``"mxgen._timing:recurrent"``) with the shape as keyword arguments; each
returns ``(native ms, fallback ms)``, the fastest of interleaved rounds.
Nothing in mxgen imports this module: it may import anything.
"""
import time

import mxnet as mx
from mxnet import autograd, gluon

__all__ = ["interleaved_ms", "recurrent", "recurrent_dtype", "dropout", "generation",
           "generation_dtype", "gan_dtype", "style_dtype", "generator_dtype",
           "transformer_dtype", "features_dtype"]


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


def _stack_step(mode, input_size, num_hidden, num_layers, seq_len, batch, impl, dtype):
    """One training step (forward, backward, update) of a fresh stack of
    layers, as a zero-argument function."""
    from .nn.rnn import FusedRNN
    x = mx.nd.random.uniform(-1, 1, shape=(seq_len, batch, input_size))
    layers = gluon.nn.HybridSequential()
    for i in range(num_layers):
        layers.add(FusedRNN(mode, num_hidden, input_size if i == 0 else num_hidden))
    layers.initialize(mx.init.Uniform(0.1), ctx=mx.cpu())
    for layer in layers:
        layer.set_impl(impl)
        layer.set_dtype(dtype)
        layer.hybridize(static_alloc=True)
    trainer = gluon.Trainer(layers.collect_params(), "sgd", {"learning_rate": 1e-6})
    states = layers[0].begin_state(batch)

    def run():
        with autograd.record():
            h = x
            for layer in layers:
                h, _ = layer(h, *states)
            loss = h.sum()
        loss.backward()
        trainer.step(1)
        mx.nd.waitall()
    return run


def recurrent(mode, input_size, num_hidden, num_layers, seq_len, batch):
    """A training step through a fresh stack of layers of this shape,
    ``(native, fused)``: forward, backward and a weight update, as in
    training (without the update oneDNN's fused op would keep its weights
    packed between calls and look faster than it is in training)."""
    shape = (mode, input_size, num_hidden, num_layers, seq_len, batch)
    return tuple(interleaved_ms([_stack_step(*shape, impl, "float32")
                                 for impl in ("native", "fused")]))


def recurrent_dtype(mode, input_size, num_hidden, num_layers, seq_len, batch, impl):
    """The same step, ``(native in bfloat16, impl in float32)``."""
    shape = (mode, input_size, num_hidden, num_layers, seq_len, batch)
    return tuple(interleaved_ms([_stack_step(*shape, "native", "bfloat16"),
                                 _stack_step(*shape, impl, "float32")]))


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


def _generator(mode, vocab_size, num_embed, num_hidden, num_layers, batch, length):
    """``run(native, dtype)``: ``length`` sampled characters for ``batch``
    rows of a model with random weights.  MXNet's generators are seeded once
    here, not per call: ``mx.random.seed`` reseeds every generator MXNet
    holds, a set-up cost about a quarter of a short batch-1 call
    (BENCHMARKS.md), the same in every precision."""
    from .data.vocab import Vocab
    from .generation import generate
    from .models.char_rnn import CharRNN
    vocab = Vocab({chr(0x100 + i) for i in range(vocab_size)})
    model = CharRNN(vocab_size, num_embed, num_hidden, num_layers, dropout=0.0, mode=mode)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    prompt = vocab.decode([0, 1, 2][:vocab_size])
    mx.random.seed(0)
    return lambda native, dtype: generate(model, vocab, prompt, length, num_samples=batch,
                                          native=native, dtype=dtype)


def generation(mode, vocab_size, num_embed, num_hidden, num_layers, batch, length=64):
    """``length`` sampled characters for ``batch`` rows, ``(native op,
    hybridized loop)``, float32."""
    run = _generator(mode, vocab_size, num_embed, num_hidden, num_layers, batch, length)
    return tuple(interleaved_ms([lambda: run(True, "float32"), lambda: run(False, "float32")]))


def generation_dtype(mode, vocab_size, num_embed, num_hidden, num_layers, batch, impl,
                     length=64):
    """The same, ``(native op in bfloat16, impl in float32)``."""
    run = _generator(mode, vocab_size, num_embed, num_hidden, num_layers, batch, length)
    return tuple(interleaved_ms([lambda: run(True, "bfloat16"),
                                 lambda: run(impl == "native", "float32")]))


def _device(device):
    return mx.gpu(0) if device == "gpu" else mx.cpu()


def gan_dtype(image_size, latent_size, ngf, ndf, nc, batch, device, low):
    """A DCGAN training step (both networks), ``(in low, in float32)``."""
    from .models.dcgan import DCGANConfig
    from .train.gan import build_gan_step
    cfg = DCGANConfig(image_size=image_size, latent_size=latent_size, ngf=ngf, ndf=ndf, nc=nc)
    ctx = _device(device)
    real = mx.nd.random.uniform(-1, 1, shape=(batch, nc, image_size, image_size), ctx=ctx)

    def step(dtype):
        step = build_gan_step(cfg, 2e-4, 0.5, [ctx], dtype=dtype)[2]
        return lambda: step(real).wait_to_read()
    return tuple(interleaved_ms([step(low), step("float32")], rounds=5))


def style_dtype(width, size, batch, device, low):
    """A style-network training step (transformer forward and backward
    through the feature network), ``(in low, in float32)``."""
    from .models.features import get_feature_net
    from .models.style import TransformerNet
    from .nn.precision import set_compute_dtype
    ctx = _device(device)
    x = mx.nd.random.uniform(0, 1, shape=(batch, 3, size, size), ctx=ctx)

    def step(dtype):
        net = TransformerNet(width=width)
        net.initialize(mx.init.Xavier(), ctx=ctx)
        features = get_feature_net(ctx=ctx)[0]
        net.hybridize(static_alloc=True)
        for block in (net, features):
            set_compute_dtype(block, dtype)
        trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-6})

        def run():
            with autograd.record():
                loss = sum(f.sum() for f in features(net(x)))
            loss.backward()
            trainer.step(batch)
            mx.nd.waitall()
        return run
    return tuple(interleaved_ms([step(low), step("float32")], rounds=5))


def _forward_dtype(build, x, low):
    """Forward passes of a network built by ``build()``, ``(in low, in float32)``."""
    from .nn.precision import set_compute_dtype

    def run(dtype):
        net = build()
        set_compute_dtype(net, dtype, for_training=False)
        return lambda: net(x).wait_to_read()
    return tuple(interleaved_ms([run(low), run("float32")], rounds=5))


def generator_dtype(image_size, latent_size, ngf, nc, batch, device, low):
    """Sampling ``batch`` images from a DCGAN generator, ``(in low, in float32)``."""
    from .models.dcgan import Generator, dcgan_init
    ctx = _device(device)

    def build():
        net = Generator(image_size, latent_size, ngf, nc)
        dcgan_init(net, [ctx])
        net.hybridize(static_alloc=True)
        return net
    return _forward_dtype(build, mx.nd.random.normal(shape=(batch, latent_size, 1, 1), ctx=ctx),
                          low)


def transformer_dtype(width, residual, height, width_px, device, low):
    """Stylizing one ``height`` x ``width_px`` image with a style network,
    ``(in low, in float32)``."""
    from .models.style import TransformerNet
    ctx = _device(device)

    def build():
        net = TransformerNet(width, residual)
        net.initialize(mx.init.Xavier(magnitude=2), ctx=ctx)
        net.hybridize(static_alloc=True)
        return net
    return _forward_dtype(build, mx.nd.random.uniform(shape=(1, 3, height, width_px), ctx=ctx),
                          low)


def features_dtype(height, width, device, low):
    """One iteration of ``stylize --method optim``: the random feature
    network forward and backward to the pixels, ``(in low, in float32)``."""
    from .models.features import get_feature_net
    from .nn.precision import set_compute_dtype
    ctx = _device(device)
    x = mx.nd.random.uniform(shape=(1, 3, height, width), ctx=ctx)
    x.attach_grad()

    def run(dtype):
        net = get_feature_net(ctx=ctx)[0]
        set_compute_dtype(net, dtype)

        def step():
            with autograd.record():
                loss = sum(f.sum() for f in net(x))
            loss.backward()
            x.grad.wait_to_read()
        return step
    return tuple(interleaved_ms([run(low), run("float32")], rounds=5))
