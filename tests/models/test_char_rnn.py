import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.data.batchify import BPTTBatches
from mxgen.data.vocab import Vocab
from mxgen.errors import MXGenError
from mxgen.models import CharRNN, get_model
from mxgen.nn.rnn import MODES
from mxgen.train.lm import LMLoss


def _batch(nietzsche, seq_len=30, batch_size=4):
    vocab = Vocab.from_text(nietzsche)
    data, target = BPTTBatches(vocab.encode(nietzsche[:20000]), batch_size, seq_len)[3]
    return vocab, mx.nd.array(data), mx.nd.array(target)


@pytest.mark.parametrize("mode", MODES)
def test_hybrid_eager_and_cell_loop_agree(mode, nietzsche, seed):
    vocab, data, _ = _batch(nietzsche)
    model = CharRNN(len(vocab), 16, 32, num_layers=2, dropout=0.0, mode=mode)
    model.initialize(mx.init.Xavier())
    states = [s + 0.1 for s in model.begin_state(4)]             # non-zero start state
    eager, eager_states = model(data, *states)
    cells, cell_states = model.forward_cells(data, states)
    model.hybridize(static_alloc=True)
    hybrid, hybrid_states = model(data, *states)
    assert eager.shape == (30, 4, len(vocab))
    np.testing.assert_allclose(hybrid.asnumpy(), eager.asnumpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cells.asnumpy(), eager.asnumpy(), rtol=0, atol=1e-5)
    for a, b, c in zip(eager_states, hybrid_states, cell_states):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-6)
        np.testing.assert_allclose(a.asnumpy(), c.asnumpy(), atol=1e-5)


def test_fused_weights_match_gluon_lstm(seed):
    """Our flat layout is the RNN operator's: copying gluon.rnn.LSTM's weights in
    gives gluon's outputs."""
    model = CharRNN(20, 8, 16, num_layers=1, dropout=0.0, mode="lstm")
    model.initialize(mx.init.Xavier())
    ref = gluon.rnn.LSTM(16, input_size=8)
    ref.initialize(mx.init.Xavier())
    layer = model.layers[0]
    layer.pack({(k, 0): ref.params.get("l0_" + k).data() for k in
                ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")})
    x = mx.nd.random.normal(shape=(7, 3, 8))
    ours, _ = layer(x, *layer.begin_state(3))
    theirs = ref(x)
    np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), atol=1e-6)


def test_dropout_really_applies_in_training(nietzsche, seed):
    """oneDNN's fused multi-layer RNN ignores its dropout argument; ours must not."""
    vocab, data, _ = _batch(nietzsche)
    with_dropout = CharRNN(len(vocab), 16, 32, 2, dropout=0.5)
    without = CharRNN(len(vocab), 16, 32, 2, dropout=0.0)
    for net in (with_dropout, without):
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True)
    for (_, a), (_, b) in zip(sorted(with_dropout.collect_params().items()),
                              sorted(without.collect_params().items())):
        b.set_data(a.data())
    states = without.begin_state(4)
    with autograd.predict_mode():
        np.testing.assert_allclose(with_dropout(data, *states)[0].asnumpy(),
                                   without(data, *states)[0].asnumpy(), atol=1e-6)
    with autograd.record(train_mode=True):
        dropped = with_dropout(data, *states)[0].asnumpy()
        clean = without(data, *states)[0].asnumpy()
    assert np.abs(dropped - clean).mean() > 1e-2
    # ... and between the layers too: embeddings, each layer's output.
    syms = [mx.sym.var("s%d" % i) for i in range(4)]
    out, _ = with_dropout(mx.sym.var("data"), *syms)
    import json
    ops = [n["op"] for n in json.loads(out.tojson())["nodes"]]
    assert ops.count("Dropout") == 3 and ops.count("RNN") == 2


def test_tied_weights_share_the_embedding():
    model = CharRNN(30, 32, 32, 1, tie_weights=True)
    model.initialize()
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(MXGenError, match="num_embed == num_hidden"):
        CharRNN(30, 16, 32, 1, tie_weights=True)


def test_get_model_lists_valid_names():
    assert isinstance(get_model("char_rnn", vocab_size=10, num_hidden=8, num_embed=4), CharRNN)
    with pytest.raises(MXGenError, match="valid names: char_rnn, dcgan_discriminator, dcgan_generator, style_net, unrolled_rnn"):
        get_model("transformer")


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_loss_goes_down_on_real_text(mode, nietzsche, seed):
    vocab = Vocab.from_text(nietzsche)
    batches = BPTTBatches(vocab.encode(nietzsche[:30000]), 16, 40)
    model = CharRNN(len(vocab), 32, 64, 1, dropout=0.0, mode=mode)
    model.initialize(mx.init.Xavier())
    loss_block = LMLoss(model)
    loss_block.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 5e-3})
    losses = []
    for i in range(30):
        data, target = (mx.nd.array(a) for a in batches[i % len(batches)])
        with autograd.record():
            loss, _ = loss_block(data, target, *model.begin_state(16))
        loss.backward()
        trainer.step(16 * 40)
        losses.append(loss.asscalar() / (16 * 40))
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3])
