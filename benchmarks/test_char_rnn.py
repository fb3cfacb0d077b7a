"""Char-RNN training-step throughput: hybridized fused vs eager, vs a cell loop."""
import mxnet as mx
import pytest
from mxnet import autograd, gluon, nd

from mxgen.data.batchify import BPTTBatches
from mxgen.data.vocab import Vocab
from mxgen.models import CharRNN, UnrolledRNN
from mxgen.train.lm import build_lm_step
from mxgen.train.text import TextTrainConfig

from conftest import compare, record_compute

VOCAB, EMBED, HIDDEN, LAYERS = 85, 64, 256, 2


def _batch(text, seq_len, batch_size):
    vocab = Vocab.from_text(text)
    data, target = BPTTBatches(vocab.encode(text), batch_size, seq_len)[0]
    return len(vocab), nd.array(data), nd.array(target)


def _fused_step(mode, vocab_size, data, target, hybrid, dropout=0.2, impl="auto",
                dropout_impl="auto"):
    """``mxgen train-text``'s own step (:class:`mxgen.train.lm.LMStep`, built
    by the same function): forward, summed loss, backward, global-norm sync,
    clipped Adam update.  ``impl`` / ``dropout_impl``: the recurrent and
    dropout kernels (auto = what train-text picks; fused / mxnet = MXNet's
    own operators).  The step carries the kernels chosen and why."""
    cfg = TextTrainConfig(mode=mode, num_embed=EMBED, num_hidden=HIDDEN, num_layers=LAYERS,
                          dropout=dropout, seq_len=data.shape[0], batch_size=data.shape[1],
                          rnn_impl=impl, dropout_impl=dropout_impl, lr=1e-3)
    model, train_step = build_lm_step(cfg.model_config(vocab_size), cfg, [mx.cpu()],
                                      hybridize=hybrid)
    states = [[model.begin_state(data.shape[1])]]

    def step():
        _, states[0], _ = train_step(data, target, states[0])
    step.kernels = (model.rnn_impl, model.dropout_impl)
    step.reasons = (model.rnn_impl_reason, model.dropout_impl_reason)
    return step


class _CellLM(gluon.Block):
    """The eager baseline users write first: LSTMCells stepped in a Python loop."""

    def __init__(self, vocab_size, mode):
        super().__init__()
        cell = {"lstm": gluon.rnn.LSTMCell, "gru": gluon.rnn.GRUCell}[mode]
        with self.name_scope():
            self.embedding = gluon.nn.Embedding(vocab_size, EMBED)
            self.cells = gluon.rnn.SequentialRNNCell()
            for i in range(LAYERS):
                self.cells.add(cell(HIDDEN, input_size=EMBED if i == 0 else HIDDEN))
            self.decoder = gluon.nn.Dense(vocab_size, flatten=False, in_units=HIDDEN)

    def forward(self, data, states):
        x = self.embedding(data)
        outputs = []
        for t in range(data.shape[0]):
            out, states = self.cells(x[t], states)
            outputs.append(out)
        return self.decoder(nd.stack(*outputs)), states


def _cell_step(mode, vocab_size, data, target):
    model = _CellLM(vocab_size, mode)
    model.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    states = [model.cells.begin_state(batch_size=data.shape[1])]

    def step():
        st = [s.detach() for s in states[0]]
        with autograd.record():
            out, states[0] = model(data, st)
            loss = loss_fn(out, target).sum()
        loss.backward()
        grads = [p.grad() for p in model.collect_params().values()]
        gluon.utils.clip_global_norm(grads, 5.0 * data.size)
        trainer.step(data.size)
    return step


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_train_step(benchmark, quick, text_corpus, mode):
    seq_len, batch = (50, 16) if quick else (100, 32)
    vocab_size, data, target = _batch(text_corpus, seq_len, batch)
    rounds, warmup = (3, 1) if quick else (15, 3)
    baselines = {"eager": _fused_step(mode, vocab_size, data, target, hybrid=False)}
    candidate = _fused_step(mode, vocab_size, data, target, hybrid=True)
    kernels = candidate.kernels
    if kernels != ("fused", "mxnet"):
        # the same step on MXNet's own operators only (oneDNN fused RNN, MXNet
        # Dropout): hybridized, and eager as plain Gluon code would run it
        for name, hybrid in (("mxnet_ops", True), ("mxnet_ops_eager", False)):
            baselines[name] = _fused_step(mode, vocab_size, data, target, hybrid=hybrid,
                                          impl="fused", dropout_impl="mxnet")
    baselines["cell_loop"] = _cell_step(mode, vocab_size, data, target)
    cand, _ = compare(benchmark, candidate, baselines, data.size, "tokens", rounds, warmup,
                      {"model": "%s %dx%d, embed %d, vocab %d" % (mode, LAYERS, HIDDEN, EMBED,
                                                                  vocab_size),
                       "shape": "seq %d x batch %d" % (seq_len, batch),
                       "rnn_kernel": kernels[0], "dropout_kernel": kernels[1],
                       "rnn_kernel_reason": candidate.reasons[0],
                       "dropout_kernel_reason": candidate.reasons[1]})
    # FLOPs per token: 3x (forward + 2 backward) of the gate GEMMs and the decoder
    gates = {"lstm": 4, "gru": 3}[mode]
    fwd = sum(2 * gates * HIDDEN * ((EMBED if i == 0 else HIDDEN) + HIDDEN)
              for i in range(LAYERS)) + 2 * HIDDEN * vocab_size
    benchmark.extra_info["mflop_per_token"] = round(3 * fwd / 1e6, 2)
    record_compute(benchmark, cand, 3 * fwd)


def test_unrolled_step(benchmark, quick, text_corpus):
    from mxgen.data.batchify import WindowDataset
    vocab = Vocab.from_text(text_corpus)
    xs, ys = WindowDataset(vocab.encode(text_corpus[:50000]), 3).arrays()
    batch = 256 if quick else 1024
    x, y = nd.array(xs[:batch]), nd.array(ys[:batch])

    def make(hybrid):
        model = UnrolledRNN(len(vocab), num_inputs=3, num_embed=42, num_hidden=256)
        model.initialize(mx.init.Xavier())
        if hybrid:
            model.hybridize(static_alloc=True)
        trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        def step():
            with autograd.record():
                loss = loss_fn(model(x), y).sum()
            loss.backward()
            trainer.step(batch)
        return step
    rounds, warmup = (5, 2) if quick else (30, 5)
    compare(benchmark, make(True), {"eager": make(False)}, batch, "samples", rounds, warmup,
            {"model": "unrolled 3-char, embed 42, hidden 256", "shape": "batch %d" % batch})
