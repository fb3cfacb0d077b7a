"""Fused recurrent layers with their weights in ONE flat parameter.

MXNet's fused ``RNN`` operator (oneDNN on CPU, cuDNN on GPU) takes all weights
as one flat vector.  ``gluon.rnn.LSTM`` keeps them as separate parameters and
re-concatenates them on every call (``_rnn_param_concat``), most of a
generation step at batch 1.  :class:`FusedRNN` stores the flat vector
itself, in the operator's own layout, so nothing is concatenated, ever.

Layout of the flat vector for ``num_layers`` unidirectional layers, gates
``G`` (1 for rnn_relu/rnn_tanh, 3 for gru, 4 for lstm), hidden ``H``:
all weights first, layer by layer ``[W_i2h (G*H, I_l), W_h2h (G*H, H)]``,
then all biases, layer by layer ``[b_i2h (G*H,), b_h2h (G*H,)]``.
Gate order is MXNet's: lstm ``i, f, g, o``; gru ``r, z, n``.

:func:`cell_step` is the same arithmetic one time step at a time, used by the
cell-loop baseline and the per-step generator; tests check the two agree.
"""
import math

import mxnet as mx
from mxnet.gluon import HybridBlock

from .. import _calibrate, _native
from ..errors import MXGenError

__all__ = ["MODES", "IMPLS", "DTYPES", "DTYPE_CHOICES", "explain_dtype", "FusedRNN", "make_rnn",
           "cell_step", "cell_gates", "num_gates", "num_states", "FusedRNNInit", "resolve_impl",
           "explain_impl"]

IMPLS = ("auto", "fused", "native")
# what the recurrent kernels multiply in: bfloat16 on mxgen's native ops,
# float16 on MXNet's fused op (cuDNN on GPUs)
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
NATIVE_OPS = {"lstm": "mxgen_lstm", "gru": "mxgen_gru"}   # mode -> mxgen's training op

MODES = ("rnn_relu", "rnn_tanh", "gru", "lstm")
_GATES = {"rnn_relu": 1, "rnn_tanh": 1, "gru": 3, "lstm": 4}


def num_gates(mode):
    return _GATES[mode]


def num_states(mode):
    """Recurrent states per layer: (h, c) for lstm, (h,) otherwise."""
    return 2 if mode == "lstm" else 1


def resolve_impl(impl, mode, num_layers=1, contexts=None, shape=None):
    """Which kernel runs a recurrent layer: ``'fused'`` or ``'native'``.

    ``'fused'`` is MXNet's RNN operator (oneDNN on CPU, cuDNN on GPU).
    ``'native'`` is mxgen's ``mxgen_lstm`` / ``mxgen_gru`` operators
    (kernels/lstm.h, kernels/gru.h): one single-layer LSTM or GRU on mxgen's
    own GEMM, CPU only.  ``'auto'`` times both on ``shape`` (see
    :func:`explain_impl`) and keeps native only where it is faster on this
    machine.  Results agree to float rounding (tests check 1e-5); checkpoints
    are the same either way.
    """
    return explain_impl(impl, mode, num_layers, contexts, shape)[0]


def explain_impl(impl, mode, num_layers=1, contexts=None, shape=None):
    """:func:`resolve_impl` with its one-line reason, ``(impl, reason)``.

    ``shape``: ``{'input_size', 'num_hidden', 'num_layers', 'seq_len',
    'batch'}`` of the stack to be trained, needed where ``'auto'`` has to
    measure: it times a training step of that stack (up to 100 time steps)
    on both kernels, a few seconds the first time, then cached per machine
    (see :mod:`mxgen._calibrate`).
    """
    why_not = None
    if mode not in NATIVE_OPS or num_layers != 1:
        why_not = ("the native recurrent ops cover single-layer lstm and gru only (got %s)"
                   % mode)
    measure = None
    if shape is not None:
        shape = dict(shape, mode=mode, seq_len=min(int(shape["seq_len"]), 100))  # longer: same
        measure = ("rnn", shape, "mxgen._timing:recurrent", NATIVE_OPS.get(mode),
                   "MXNet's fused RNN op")
    return _calibrate.explain_impl("rnn_impl", impl, IMPLS, "fused", NATIVE_OPS.get(mode),
                                   "the native recurrent ops run", contexts, why_not, measure)


def explain_dtype(dtype, mode, num_layers, impl, contexts=None, shape=None, impl_fixed=False):
    """What a stack of recurrent layers multiplies in, ``(dtype, impl,
    reason)``: ``'float32'``, ``'bfloat16'`` (mxgen's native ops only, so
    ``impl`` becomes ``'native'``) or ``'float16'`` (GPUs: MXNet's automatic
    mixed precision; ``impl`` unchanged).

    ``'auto'`` is bfloat16 only where the native kernels run with AVX512_BF16
    instructions AND a training step of ``shape`` (see :func:`explain_impl`)
    measures faster in bfloat16 than in float32 on ``impl``; without those
    instructions bfloat16 is emulated with float32 multiplies, slower than
    float32, so auto keeps float32 and says so.  ``impl_fixed``: the user
    chose ``impl``, so bfloat16 may not move the layers to the native op.
    """
    if dtype not in DTYPE_CHOICES:
        raise MXGenError("unknown dtype %r; choose from %s" % (dtype, ", ".join(DTYPE_CHOICES)))
    gpu = any(c.device_type == "gpu" for c in (contexts or [mx.cpu()]))
    if dtype == "float16":
        if not gpu:
            raise MXGenError("--dtype float16 is half precision for GPUs (MXNet's mixed"
                             " precision with loss scaling); on a CPU use bfloat16")
        if impl_fixed and impl == "native":
            raise MXGenError("--dtype float16 runs on MXNet's fused RNN op (cuDNN); drop"
                             " --rnn-impl native")
        return "float16", "fused", "float16 given (cuDNN, dynamic loss scaling)"
    if dtype == "float32" or (dtype == "auto" and gpu):
        return "float32", impl, ("float32 given" if dtype == "float32" else
                                 "float32: on a GPU, float16 is chosen with --dtype float16")
    why_not = None
    if gpu:
        why_not = "bfloat16 runs on mxgen's native CPU kernels; on a GPU use float16"
    elif mode not in NATIVE_OPS or num_layers != 1:
        why_not = "bfloat16 runs on mxgen's native lstm and gru ops only (got %s)" % mode
    elif impl_fixed and impl != "native":
        why_not = "--rnn-impl %s asks for MXNet's fused RNN op, which has no bfloat16" % impl
    elif not _native.available(NATIVE_OPS[mode]):
        why_not = _native.status()[2] or "the native ops are not loaded"
    if why_not is not None:
        if dtype == "bfloat16":
            raise MXGenError("--dtype bfloat16 unavailable: %s" % why_not)
        return "float32", impl, "float32: " + why_not
    hardware = _native.bf16_hardware()
    if dtype == "bfloat16":
        return "bfloat16", "native", "bfloat16 given (%s)" % (
            "%s kernels" % _native.isa() if hardware else "emulated: the %s kernels have no"
            " bfloat16 instructions, slower than float32" % _native.isa())
    if not hardware:
        return "float32", impl, ("float32: the %s kernels have no bfloat16 instructions (AMX"
                                 " or AVX512_BF16), and emulated bfloat16 is slower than"
                                 " float32" % _native.isa())
    if shape is None:
        raise ValueError("dtype='auto' measures both precisions and needs the shape to time")
    shape = dict(shape, mode=mode, impl=impl, seq_len=min(int(shape["seq_len"]), 100))
    fallback = "MXNet's fused RNN op" if impl == "fused" else "%s" % NATIVE_OPS[mode]
    decision = _calibrate.decide("rnn_dtype", shape, "mxgen._timing:recurrent_dtype",
                                 "%s in bfloat16" % NATIVE_OPS[mode],
                                 "%s in float32" % fallback, "float32")
    if decision.impl == "native":
        return "bfloat16", "native", "bfloat16: " + decision.reason
    return "float32", impl, "float32: " + decision.reason


def _segments(mode, num_hidden, input_size, num_layers):
    """(kind, layer, shape) of each block in the flat vector, in order."""
    gh = num_gates(mode) * num_hidden
    out = []
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else num_hidden
        out.append(("i2h_weight", layer, (gh, in_size)))
        out.append(("h2h_weight", layer, (gh, num_hidden)))
    for layer in range(num_layers):
        out.append(("i2h_bias", layer, (gh,)))
        out.append(("h2h_bias", layer, (gh,)))
    return out


def _size(shape):
    return int(math.prod(shape))


@mx.init.register
class FusedRNNInit(mx.init.Initializer):
    """Initialises a flat RNN vector block by block.

    Weights ~ U(-1/sqrt(H), 1/sqrt(H)); biases 0, except the lstm forget gate's
    input bias, which starts at ``forget_bias`` so early gradients flow.
    """

    def __init__(self, mode, num_hidden, input_size, num_layers, forget_bias=1.0):
        super().__init__(mode=mode, num_hidden=num_hidden, input_size=input_size,
                         num_layers=num_layers, forget_bias=forget_bias)
        self.mode, self.num_hidden = mode, num_hidden
        self.input_size, self.num_layers = input_size, num_layers
        self.forget_bias = forget_bias

    def _init_weight(self, _, arr):
        bound = 1.0 / math.sqrt(self.num_hidden)
        offset = 0
        for kind, _layer, shape in _segments(self.mode, self.num_hidden, self.input_size,
                                             self.num_layers):
            n = _size(shape)
            view = arr[offset:offset + n]
            if kind.endswith("weight"):
                view[:] = mx.nd.random.uniform(-bound, bound, shape=(n,), ctx=arr.context)
            else:
                view[:] = 0
                if self.mode == "lstm" and kind == "i2h_bias":
                    h = self.num_hidden
                    view[h:2 * h] = self.forget_bias
            offset += n
        assert offset == arr.size


class FusedRNN(HybridBlock):
    """A fused RNN (one or more layers in one operator call), TNC layout.

    Parameters
    ----------
    mode : {'rnn_relu', 'rnn_tanh', 'gru', 'lstm'}
    num_hidden : int
    input_size : int
        Must be known up front: it fixes the flat vector's size.
    num_layers : int
        Layers inside this one operator call.  Between-layer dropout is NOT
        offered here: oneDNN's fused RNN silently ignores it on CPU; stack
        single-layer FusedRNNs with an explicit Dropout instead.

    Call ``layer(x, *states)`` with x ``(T, N, input_size)`` and states each
    ``(num_layers, N, H)``; returns ``(out (T, N, H), [new states])``.  With
    the native kernels an optional last argument is the training probe of
    :func:`mxgen.nn.dropout.training_probe` (one per model is enough;
    the layer makes its own otherwise); the fused kernel ignores it.
    """

    def __init__(self, mode, num_hidden, input_size, num_layers=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError("unknown RNN mode %r; choose from %s" % (mode, ", ".join(MODES)))
        self.impl, self.dtype = "fused", "float32"
        self.mode, self.num_hidden = mode, num_hidden
        self.input_size, self.num_layers = input_size, num_layers
        self.segments = _segments(mode, num_hidden, input_size, num_layers)
        size = sum(_size(shape) for _, _, shape in self.segments)
        with self.name_scope():
            self.weights = self.params.get(
                "weights", shape=(size,),
                init=FusedRNNInit(mode, num_hidden, input_size, num_layers))

    def state_shapes(self, batch_size):
        return [(self.num_layers, batch_size, self.num_hidden)] * num_states(self.mode)

    def begin_state(self, batch_size, ctx=None, func=mx.nd.zeros):
        return [func(shape=s, ctx=ctx) for s in self.state_shapes(batch_size)]

    def set_impl(self, impl):
        """Run this layer with ``'fused'`` or ``'native'`` (see :func:`resolve_impl`).

        Call before the first forward, or clear the enclosing cached graphs.
        """
        if impl not in ("fused", "native"):
            raise ValueError("impl must be 'fused' or 'native', got %r" % (impl,))
        if impl == "native" and (self.mode not in NATIVE_OPS or self.num_layers != 1):
            raise ValueError("the native recurrent ops cover single-layer lstm and gru only")
        if (impl, self.dtype) in (("fused", "bfloat16"), ("native", "float16")):
            raise ValueError("%s has no %s kernels" % (impl, self.dtype))
        self.impl = impl
        self._clear_cached_op()

    def set_dtype(self, dtype):
        """Multiply in ``'float32'``, ``'bfloat16'`` (the native kernels'
        GEMMs; float32 accumulation, float32 weights, states and outputs) or
        ``'float16'`` (MXNet's fused op, cuDNN on GPUs, between casts: the
        weights, states and outputs outside the op stay float32).  Clears
        this layer's cached graph; clear the enclosing ones too."""
        if dtype not in DTYPES:
            raise ValueError("dtype must be one of %s, got %r" % (", ".join(DTYPES), dtype))
        if dtype == "bfloat16" and self.impl != "native":
            raise ValueError("bfloat16 runs on mxgen's native recurrent ops only")
        if dtype == "float16" and self.impl != "fused":
            raise ValueError("float16 runs on MXNet's fused RNN op only")
        self.dtype = dtype
        self._clear_cached_op()

    def hybrid_forward(self, F, inputs, *states, weights):
        states, probe = states[:num_states(self.mode)], states[num_states(self.mode):]
        if self.impl == "native":
            # probe: tells mxgen's op whether MXNet is training (see dropout.py); a
            # CharRNN passes the one its dropouts share after the states.  The identities make
            # grad_req='add' work: lib_api does not tell custom ops to add to a
            # gradient, so the op writes into the identity's gradient and the
            # identity's own backward pass adds (or writes) as MXNet asks.  In a
            # static graph they share memory with their input.
            from .dropout import training_probe
            probe = probe[0] if probe else training_probe(F)
            inputs, weights = F.identity(inputs), F.identity(weights)
            states = [F.identity(s) for s in states]
            if self.mode == "lstm":
                out = F.mxgen_lstm(inputs, states[0], states[1], weights, probe,
                                   state_size=self.num_hidden, dtype=self.dtype)
                return out[0], [out[1], out[2]]
            out = F.mxgen_gru(inputs, states[0], weights, probe, state_size=self.num_hidden,
                              dtype=self.dtype)
            return out[0], [out[1]]
        if self.dtype == "float16":     # cuDNN in half precision, float32 around it
            out = F.RNN(*[F.amp_cast(a, dtype="float16") for a in (inputs, weights, *states)],
                        state_size=self.num_hidden, num_layers=self.num_layers, mode=self.mode,
                        state_outputs=True, p=0.0)
            out = [F.amp_cast(o, dtype="float32") for o in out]
        else:
            out = F.RNN(inputs, weights, *states, state_size=self.num_hidden,
                        num_layers=self.num_layers, mode=self.mode, state_outputs=True, p=0.0)
        return out[0], list(out[1:])

    def unpack(self, F=mx.nd, weights=None):
        """The flat vector as ``{(kind, layer): array}`` (copies in eager mode)."""
        weights = self.weights.data() if weights is None else weights
        out, offset = {}, 0
        for kind, layer, shape in self.segments:
            n = _size(shape)
            out[(kind, layer)] = F.slice(weights, begin=(offset,), end=(offset + n,)).reshape(shape)
            offset += n
        return out

    def pack(self, blocks):
        """Inverse of :meth:`unpack`: write ``{(kind, layer): array}`` into the vector."""
        flat = mx.nd.concat(*[blocks[(k, l)].reshape(-1) for k, l, _ in self.segments], dim=0)
        self.weights.set_data(flat)


def make_rnn(mode, num_hidden, input_size, num_layers=1, **kwargs):
    """The one place fused recurrent layers are built."""
    return FusedRNN(mode, num_hidden, input_size, num_layers=num_layers, **kwargs)


def cell_step(F, mode, x, states, i2h_weight, h2h_weight, i2h_bias, h2h_bias, num_hidden):
    """One time step of one layer, with the fused operator's arithmetic.

    x ``(N, I)``; states a list of ``(N, H)``; returns the list of new states
    (the new ``h`` first).
    """
    i2h = F.FullyConnected(x, i2h_weight, i2h_bias, num_hidden=num_gates(mode) * num_hidden)
    h2h = F.FullyConnected(states[0], h2h_weight, h2h_bias,
                           num_hidden=num_gates(mode) * num_hidden)
    return cell_gates(F, mode, i2h, h2h, states)


def cell_gates(F, mode, i2h, h2h, states):
    """The gate arithmetic of one step: input and recurrent pre-activations
    ``(N, G*H)`` each and the old states -> the new states.

    For rnn and lstm only their sum matters, so ``h2h=None`` means ``i2h``
    already holds it (one product over joined weights); gru needs them apart
    (its reset gate scales the recurrent term and its bias).
    """
    if mode in ("rnn_relu", "rnn_tanh"):
        act = "relu" if mode == "rnn_relu" else "tanh"
        return [F.Activation(i2h if h2h is None else i2h + h2h, act_type=act)]
    if mode == "lstm":
        gates = F.SliceChannel(i2h if h2h is None else i2h + h2h, num_outputs=4, axis=1)
        in_gate = F.sigmoid(gates[0])
        forget_gate = F.sigmoid(gates[1])
        cell_in = F.tanh(gates[2])
        out_gate = F.sigmoid(gates[3])
        c = forget_gate * states[1] + in_gate * cell_in
        return [out_gate * F.tanh(c), c]
    # gru: the reset gate scales the whole h2h candidate term, bias included.
    i2h_r, i2h_z, i2h_n = F.SliceChannel(i2h, num_outputs=3, axis=1)
    h2h_r, h2h_z, h2h_n = F.SliceChannel(h2h, num_outputs=3, axis=1)
    reset = F.sigmoid(i2h_r + h2h_r)
    update = F.sigmoid(i2h_z + h2h_z)
    cand = F.tanh(i2h_n + reset * h2h_n)
    return [(1 - update) * cand + update * states[0]]
