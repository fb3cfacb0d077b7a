import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from mxgen.data.batchify import WindowDataset
from mxgen.data.vocab import Vocab
from mxgen.models import UnrolledRNN


def test_hybrid_and_eager_agree(nietzsche, seed):
    vocab = Vocab.from_text(nietzsche)
    xs, _ = WindowDataset(vocab.encode(nietzsche[:2000]), 3).arrays()
    model = UnrolledRNN(len(vocab), num_inputs=3, num_embed=16, num_hidden=32)
    model.initialize(mx.init.Xavier())
    x = mx.nd.array(xs[:50])
    eager = model(x)
    model.hybridize(static_alloc=True)
    np.testing.assert_allclose(model(x).asnumpy(), eager.asnumpy(), atol=1e-6)
    assert eager.shape == (50, len(vocab))


def test_shared_dense_layers_are_reused_per_position():
    model = UnrolledRNN(10, num_inputs=5, num_embed=4, num_hidden=8)
    # embedding, input dense (w, b), hidden dense (w, b), output dense (w, b)
    assert len(list(model.collect_params().keys())) == 7


def test_learns_next_character(nietzsche, seed):
    vocab = Vocab.from_text(nietzsche)
    xs, ys = WindowDataset(vocab.encode(nietzsche[:20000]), 3).arrays()
    model = UnrolledRNN(len(vocab), num_inputs=3, num_embed=24, num_hidden=64)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-2})
    first = last = None
    for i in range(60):
        sl = slice((i * 256) % 19000, (i * 256) % 19000 + 256)
        with autograd.record():
            loss = loss_fn(model(mx.nd.array(xs[sl])), mx.nd.array(ys[sl])).mean()
        loss.backward()
        trainer.step(1)
        value = loss.asscalar()
        first = value if first is None else first
        last = value
    assert last < 0.7 * first
