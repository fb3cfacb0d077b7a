"""The Gluon tutorial's own call shapes run on mxgen and agree with mxgen's calls."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.data.batchify import BPTTBatches
from mxgen.data.vocab import Vocab
from mxgen.models import CharRNN
from mxgen.tutorial import GluonRNNModel


@pytest.mark.parametrize("mode", ["rnn_relu", "rnn_tanh", "gru", "lstm"])
def test_tutorial_calls_agree_with_mxgens(mode):
    V, T, N = 30, 7, 3
    tutorial = GluonRNNModel(mode, V, 8, 16, 2, 0.0)          # positional, mode first
    tutorial.initialize(mx.init.Xavier())
    ours = CharRNN(V, 8, 16, 2, dropout=0.0, mode=mode)
    ours.initialize()
    for (_, src), (_, dst) in zip(sorted(tutorial._collect_params_with_prefix().items()),
                                  sorted(ours._collect_params_with_prefix().items())):
        dst.set_data(src.data())
    data = mx.nd.array(np.random.RandomState(0).randint(0, V, size=(T, N)))
    hidden = tutorial.begin_state(func=mx.nd.zeros, batch_size=N, ctx=mx.cpu())
    assert isinstance(hidden, list)
    output, hidden = tutorial(data, hidden)                      # a list of states
    flat = output.reshape((-1, V))
    assert flat.shape == (T * N, V)
    expected, expected_states = ours(data, *ours.begin_state(N))
    np.testing.assert_allclose(flat.asnumpy(), expected.reshape((-1, V)).asnumpy(), rtol=1e-6)
    for a, b in zip(hidden, expected_states):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6)
    # hybridized, with the list again
    tutorial.hybridize()
    output2, _ = tutorial(data, tutorial.begin_state(func=mx.nd.zeros, batch_size=N,
                                                     ctx=mx.cpu()))
    np.testing.assert_allclose(output2.asnumpy(), output.asnumpy(), rtol=1e-5, atol=1e-6)


def test_the_tutorials_training_loop_runs_and_learns(nietzsche):
    """The tutorial's loop, line for line: detach, record, reshape to (-1, V),
    clip_global_norm(grads, clip * seq_length * batch_size), trainer.step."""
    vocab = Vocab.from_text(nietzsche[:20000])
    V, seq_length, batch_size, clip = len(vocab), 20, 8, 0.2
    batches = BPTTBatches(vocab.encode(nietzsche[:20000]), batch_size, seq_length)
    model = GluonRNNModel("lstm", V, 16, 32, 2, 0.2)
    model.collect_params().initialize(mx.init.Xavier(), ctx=mx.cpu())
    model.hybridize()
    trainer = gluon.Trainer(model.collect_params(), "sgd",
                            {"learning_rate": 1.0, "momentum": 0, "wd": 0})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for epoch in range(10):
        total = 0.0
        hidden = model.begin_state(func=mx.nd.zeros, batch_size=batch_size, ctx=mx.cpu())
        for data, target in batches:
            data, target = mx.nd.array(data), mx.nd.array(target)
            hidden = [h.detach() for h in hidden]
            with autograd.record():
                output, hidden = model(data, hidden)
                loss = loss_fn(output.reshape((-1, V)), target.reshape((-1,)))
            loss.backward()
            grads = [p.grad(mx.cpu()) for p in model.collect_params().values()]
            gluon.utils.clip_global_norm(grads, clip * seq_length * batch_size)
            trainer.step(batch_size)
            total += mx.nd.sum(loss).asscalar()
        losses.append(total / batches.num_tokens)
    assert losses[-1] < losses[0] - 0.2, losses
