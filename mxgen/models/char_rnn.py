"""Character-level RNN language models on MXNet's fused RNN operator; the
``char_rnn`` model family."""
from dataclasses import asdict, dataclass

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError
from ..generation import CharRNNStepper, generate
from ..nn import precision
from ..nn.dropout import dropout, explain_dropout_impl, training_probe
from ..nn.rnn import MODES, cell_step, explain_dtype, explain_impl, make_rnn, num_states
from .registry import ExportGraph, Family, register

__all__ = ["CharRNNConfig", "CharRNN", "char_rnn", "FAMILY"]


@dataclass
class CharRNNConfig:
    """Hyper-parameters of :class:`CharRNN` (saved in every checkpoint)."""
    vocab_size: int
    num_embed: int = 64
    num_hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    mode: str = "lstm"
    tie_weights: bool = False

    def validate(self):
        if self.mode not in MODES:
            raise MXGenError("unknown RNN mode %r; choose from %s" % (self.mode, ", ".join(MODES)))
        for name in ("vocab_size", "num_embed", "num_hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise MXGenError("%s must be >= 1, got %r" % (name, getattr(self, name)))
        if not 0.0 <= self.dropout < 1.0:
            raise MXGenError("dropout must be in [0, 1), got %r" % self.dropout)
        if self.tie_weights and self.num_embed != self.num_hidden:
            raise MXGenError("tie_weights needs num_embed == num_hidden (got %d and %d)"
                             % (self.num_embed, self.num_hidden))
        return self

    def to_dict(self):
        return asdict(self)


class CharRNN(HybridBlock):
    """Embedding -> stacked fused RNN layers -> Dense decoder.

    Arguments follow the classic Gluon language-model tutorial
    (``vocab_size, num_embed, num_hidden, num_layers, dropout``) plus ``mode``
    (rnn_relu | rnn_tanh | gru | lstm) and ``tie_weights``.

    Each layer is its own single-layer fused RNN with ``Dropout`` between them:
    oneDNN's multi-layer fused RNN ignores its ``dropout`` argument on CPU, so
    this is how dropout really applies at fused speed.  Dropout is also applied
    to the embeddings and to the last layer's output.

    ``model(inputs, *states)``: inputs ``(T, N)`` ids (TNC without C), states as
    from :meth:`begin_state`; returns ``(logits (T, N, vocab), new_states)``.
    """

    def __init__(self, vocab_size, num_embed=CharRNNConfig.num_embed,
                 num_hidden=CharRNNConfig.num_hidden, num_layers=CharRNNConfig.num_layers,
                 dropout=CharRNNConfig.dropout, mode=CharRNNConfig.mode,
                 tie_weights=CharRNNConfig.tie_weights, **kwargs):
        super().__init__(**kwargs)
        self.config = CharRNNConfig(vocab_size, num_embed, num_hidden, num_layers, dropout,
                                    mode, tie_weights).validate()
        self.mode, self.num_hidden, self.num_layers = mode, num_hidden, num_layers
        self.dropout = dropout
        self.dropout_impl, self.dtype = "mxnet", "float32"
        self.rnn_impl_reason = self.dropout_impl_reason = "MXNet's operator by default"
        self.dtype_reason = "float32 by default"
        with self.name_scope():
            self.embedding = nn.Embedding(vocab_size, num_embed)
            self.layers = nn.HybridSequential()
            for i in range(num_layers):
                self.layers.add(make_rnn(mode, num_hidden, num_embed if i == 0 else num_hidden,
                                         prefix="rnn%d_" % i))
            if tie_weights:
                self.decoder = precision.Dense(vocab_size, flatten=False, in_units=num_hidden,
                                        params=self.embedding.params)
            else:
                self.decoder = precision.Dense(vocab_size, flatten=False, in_units=num_hidden)

    @classmethod
    def from_config(cls, config, **kwargs):
        if isinstance(config, dict):
            config = CharRNNConfig(**config)
        return cls(**config.to_dict(), **kwargs)

    def _contexts(self, contexts):
        """The given contexts, else those of this model's parameters (CPU
        when they are not initialised yet)."""
        if contexts:
            return list(contexts)
        try:
            return list(self.collect_params().values())[0].list_ctx()
        except (RuntimeError, IndexError):
            return [mx.cpu()]

    def set_rnn_impl(self, impl="auto", contexts=None, seq_len=100, batch_size=32):
        """Choose the recurrent kernel (``'auto'``, ``'fused'``, ``'native'``).

        ``'auto'`` takes mxgen's native LSTM/GRU op only on CPU, where it is
        loaded, and where it measures faster than MXNet's fused op for this
        model at ``seq_len`` x ``batch_size`` (see
        :func:`mxgen.nn.rnn.explain_impl`).  ``contexts`` default to the
        parameters' own.  Returns the kernel chosen; the reason is in
        ``rnn_impl_reason``.  Clears cached graphs, so it can be called at any time.
        """
        shape = {"input_size": self.config.num_embed, "num_hidden": self.num_hidden,
                 "num_layers": self.num_layers, "seq_len": seq_len, "batch": batch_size}
        chosen, self.rnn_impl_reason = explain_impl(impl, self.mode, 1,
                                                    self._contexts(contexts), shape)
        kept = {"fused": ("float32", "float16"), "native": ("float32", "bfloat16")}[chosen]
        for layer in self.layers:
            if layer.dtype not in kept:
                layer.set_dtype("float32")
            layer.set_impl(chosen)
        if self.dtype not in kept:
            precision.set_compute_dtype(self.decoder, "float32")
            self.dtype, self.dtype_reason = "float32", "%s has no %s kernels" % (
                chosen, self.dtype)
        self._clear_cached_op()
        return chosen

    def set_dtype(self, dtype="auto", contexts=None, seq_len=100, batch_size=32,
                  impl_fixed=False):
        """What the recurrent layers multiply in: ``'auto'``, ``'float32'``,
        ``'bfloat16'`` (mxgen's native ops, float32 accumulation; the
        weights, states and everything else stay float32) or ``'float16'``
        (GPUs: MXNet's fused op and the decoder in half precision between
        casts; the training loop scales the loss).  ``'auto'`` measures a training step of this model's layers at
        ``seq_len`` x ``batch_size`` in both (see
        :func:`mxgen.nn.rnn.explain_dtype`); bfloat16 moves the layers to the
        native op, unless ``impl_fixed`` (the user chose the recurrent
        kernel), where only the chosen kernel's precisions are considered.
        Returns the dtype chosen (reason in ``dtype_reason``)."""
        shape = {"input_size": self.config.num_embed, "num_hidden": self.num_hidden,
                 "num_layers": self.num_layers, "seq_len": seq_len, "batch": batch_size}
        chosen, impl, self.dtype_reason = explain_dtype(dtype, self.mode, 1,
                                                        self.rnn_impl, self._contexts(contexts),
                                                        shape, impl_fixed)
        for layer in self.layers:
            layer.set_dtype("float32")
            layer.set_impl(impl)
            layer.set_dtype(chosen)
        precision.set_compute_dtype(self.decoder, "float16" if chosen == "float16" else "float32")
        if impl != self.rnn_impl:
            self.rnn_impl_reason = "%s runs on the %s op" % (chosen, impl)
        self.dtype = chosen
        self._clear_cached_op()
        return chosen

    def set_dropout_impl(self, impl="auto", contexts=None, seq_len=100, batch_size=32):
        """Choose the dropout kernel (``'auto'``, ``'mxnet'``, ``'native'``).

        ``'auto'`` takes mxgen's native dropout op only on CPU where it is loaded
        and measures faster than MXNet's (see :mod:`mxgen.nn.dropout`):
        same distribution, a different random stream.  Returns the kernel
        chosen (reason in ``dropout_impl_reason``); clears cached graphs.
        """
        if self.dropout <= 0 and impl == "auto":
            self.dropout_impl, self.dropout_impl_reason = "mxnet", "the model has no dropout"
        else:
            self.dropout_impl, self.dropout_impl_reason = explain_dropout_impl(
                impl, self._contexts(contexts), (seq_len, batch_size, self.num_hidden),
                self.dropout or 0.2)
        self._clear_cached_op()
        return self.dropout_impl

    def forward(self, inputs, *states):
        if len(states) == 1 and isinstance(states[0], (list, tuple)):
            states = tuple(states[0])          # the tutorial's model(data, hidden_list)
        if (self.rnn_impl == "native" or self.dropout_impl == "native") and \
                isinstance(inputs, mx.nd.NDArray) and inputs.context.device_type != "cpu":
            raise MXGenError("this CharRNN runs mxgen's native CPU kernels but got data on %s;"
                             " call set_rnn_impl('auto') and set_dropout_impl('auto') after"
                             " moving it" % (inputs.context,))
        return super().forward(inputs, *states)

    @property
    def rnn_impl(self):
        return self.layers[0].impl

    @property
    def states_per_layer(self):
        return num_states(self.mode)

    def begin_state(self, batch_size=None, ctx=None, func=mx.nd.zeros, **kwargs):
        """Initial states: a flat list, ``states_per_layer`` arrays ``(1, N, H)``
        per layer, made by ``func`` (zeros by default).  The Gluon tutorial's
        ``begin_state(func=mx.nd.zeros, batch_size=N, ctx=c)`` works as is;
        other keywords go to ``func``."""
        if batch_size is None:
            raise MXGenError("begin_state needs batch_size")
        return [func(shape=shape, ctx=ctx, **kwargs) for layer in self.layers
                for shape in layer.state_shapes(batch_size)]

    def hybrid_forward(self, F, inputs, *states):
        k, p = self.states_per_layer, self.dropout
        native_dropout = p > 0 and self.dropout_impl == "native"
        # one probe of the training mode for every native op (see dropout.py)
        probe = training_probe(F) if native_dropout or self.rnn_impl == "native" else None
        drop_probe = probe if native_dropout else None
        layer_probe = [probe] if self.rnn_impl == "native" else []
        x = dropout(F, self.embedding(inputs), p, drop_probe, salt=0)   # (T, N, E)
        new_states = []
        for i, layer in enumerate(self.layers):
            x, layer_states = layer(x, *states[i * k:(i + 1) * k], *layer_probe)  # (T, N, H)
            new_states.extend(layer_states)
            x = dropout(F, x, p, drop_probe, salt=i + 1)
        return self.decoder(x), new_states                          # (T, N, V)

    # -- baselines -----------------------------------------------------------
    def forward_cells(self, inputs, states):
        """The same network run cell by cell (eager), as a numeric baseline.

        Shares this model's weights; slow by design.  Returns what calling the
        model returns (with dropout off).
        """
        k = self.states_per_layer
        unpacked = [layer.unpack() for layer in self.layers]
        x = self.embedding(inputs)                                   # (T, N, E)
        step_states = [[s[0] for s in states[i * k:(i + 1) * k]]     # (N, H) each
                       for i in range(self.num_layers)]
        outputs = []
        for t in range(inputs.shape[0]):
            h = x[t]
            for i, w in enumerate(unpacked):
                step_states[i] = cell_step(mx.nd, self.mode, h, step_states[i],
                                           w[("i2h_weight", 0)], w[("h2h_weight", 0)],
                                           w[("i2h_bias", 0)], w[("h2h_bias", 0)],
                                           self.num_hidden)
                h = step_states[i][0]
            outputs.append(h)
        logits = self.decoder(mx.nd.stack(*outputs, axis=0))
        return logits, [s.expand_dims(0) for layer in step_states for s in layer]

    def generate(self, vocab, prompt, length, **kwargs):
        """Generate text; see :func:`mxgen.generation.generate` for options."""
        return generate(self, vocab, prompt, length, **kwargs)


def char_rnn(**config):
    """Factory used by :func:`mxgen.models.get_model`."""
    return CharRNN(**config)


def _prepare(loaded, ctx):
    """After loading: the vocabulary must fit, and the recurrent kernel the
    model was trained with runs where it can (the same numbers as at the end
    of training); MXNet's fused op otherwise."""
    if loaded.config.vocab_size != len(loaded.vocab):
        raise MXGenError("checkpoint %s: model vocab_size %d does not match vocab.json (%d"
                         " chars)" % (loaded.ckpt_dir, loaded.config.vocab_size,
                                      len(loaded.vocab)))
    if loaded.meta.get("kernels", {}).get("rnn_impl") == "native":
        try:
            loaded.model.set_rnn_impl("native", [ctx])
        except MXGenError:   # not loaded here, or not a CPU context
            pass


def _graphs(loaded, native):
    """The export graphs: ``sequence`` (the model over a sequence) and
    ``step`` (one generation step), MXNet's own operators unless
    ``native`` keeps the native recurrent op the model trained with."""
    model = loaded.model
    if not native or model.rnn_impl != "native":
        model.set_rnn_impl("fused")
    model.set_dropout_impl("mxnet")
    model.hybridize(static_alloc=True)
    states = model.begin_state(1)
    names = ["data"] + ["state%d" % i for i in range(len(states))]
    stepper = CharRNNStepper(model)
    stepper.collect_params().initialize()
    stepper.hybridize(static_alloc=True)
    return [ExportGraph("sequence", model, (mx.nd.zeros((2, 1)),) + tuple(states), names,
                        "ids (T, N) float32, states (1, N, H) -> logits (T, N, V), states"),
            ExportGraph("step", stepper, (mx.nd.zeros((1,)),) + tuple(states), names,
                        "ids (N,) float32, states (1, N, H) -> log-probabilities (N, V),"
                        " states")]


def _export_info(loaded):
    model = loaded.model
    return {"mode": model.mode, "num_layers": model.num_layers, "num_hidden": model.num_hidden,
            "states": model.states_per_layer * model.num_layers,
            "vocab_size": len(loaded.vocab)}


FAMILY = register(Family(
    name="char_rnn", title="character RNN", config=CharRNNConfig,
    build=CharRNN.from_config, params="model.params",
    vocab=True, prepare=_prepare, graphs=_graphs, export_info=_export_info))
