"""Text generation from a :class:`~mxgen.models.CharRNN`.

Three ways to produce characters:

* ``method="stateful"`` (default): run the prompt through the fused model
  once, then carry the recurrent state one character at a time.  On the CPU,
  when mxgen's native library is loaded, all steps run in one call of the
  ``mxgen_char_rnn_generate`` operator (see ``kernels/``).  Otherwise a
  hybridized step block holds the weights pre-arranged for a single step (one
  matrix-vector product per layer, no re-concatenation), samples on the
  device, and feeds its own output back in, so the loop never waits for the
  host until all characters are done.  Greedy output is identical either way.
* ``method="window"``: the tutorial's method, kept for comparison: every new
  character re-runs the model over the last ``window`` characters from a zero
  state and takes the arg-max.
* ``beam=K``: beam search over summed log-probabilities.

Sampling: ``temperature=0`` is greedy; otherwise logits are divided by the
temperature, optionally restricted to the ``top_k`` most likely characters and
to the smallest set whose probability reaches ``top_p`` (nucleus), then one
character is drawn per sequence.  Draws use MXNet's RNG: ``seed`` makes them
reproducible.
"""
import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from . import _calibrate, _native
from .errors import MXGenError
from .fields import field
from .nn.rnn import cell_gates, cell_step, num_gates

if TYPE_CHECKING:
    from .data.vocab import Vocab

GENERATION_DTYPES = ("auto", "float32", "bfloat16", "float16")

__all__ = ["GenerateConfig", "Sampler", "CharRNNStepper", "generate", "generation_kernel",
           "check_sampling", "default_prompt", "prompt_ids_for", "texts_from"]


@dataclass
class GenerateConfig:
    """How text is generated: the defaults of :func:`generate` and of
    ``mxgen generate``'s flags."""
    length: int = field(500, "characters to generate", group="generation")
    temperature: float = field(1.0, "divides the logits; 0 = greedy", group="generation")
    top_k: int = field(0, "sample from the k most likely characters (0 = off)",
                       group="generation")
    top_p: float = field(1.0, "nucleus: the smallest set of characters holding this much"
                              " probability (1 = off)", group="generation")
    num_samples: int = field(1, "continuations, generated together as one batch",
                             group="generation")
    beam: int = field(0, "beam width (0 = sample)", group="generation")
    method: str = field("stateful", "stateful: carry the state; window: re-read the last"
                                    " --window characters per step (the tutorial's method)",
                        group="generation", choices=("stateful", "window"))
    window: int = field(100, "context of the window method", group="generation")
    seed: Optional[int] = field(None, "random seed (the same text for the same seed)",
                                group="generation")
    stop_at_eos: bool = field(False, "for a model trained with --samples: generate whole"
                                     " samples from their start, each ending at its end"
                                     " mark; --length is the cap", group="generation")
    dtype: str = field("auto", "what the native generation op multiplies in: bfloat16"
                               " (float32 sums), float32, or auto (bfloat16 where the CPU has"
                               " AVX512_BF16 or AMX and it measures faster); float16 (GPUs)"
                               " is not built yet", group="generation",
                       choices=GENERATION_DTYPES)


def check_sampling(temperature=1.0, top_k=0, top_p=1.0):
    """Validate sampling settings, raising MXGenError with the bad value."""
    if temperature is None or temperature < 0 or not math.isfinite(temperature):
        raise MXGenError("temperature must be a finite number >= 0, got %r" % temperature)
    if top_k is None or int(top_k) != top_k or top_k < 0:
        raise MXGenError("top_k must be an integer >= 0 (0 = off), got %r" % top_k)
    if top_p is None or not 0.0 < top_p <= 1.0:
        raise MXGenError("top_p must be in (0, 1] (1 = off), got %r" % top_p)


class Sampler(HybridBlock):
    """Logits ``(N, V)`` -> one id per row ``(N,)`` float32, on the device.

    Greedy when ``temperature == 0``; otherwise temperature, then top-k, then
    top-p filtering, then a categorical draw.
    """

    def __init__(self, temperature=1.0, top_k=0, top_p=1.0, **kwargs):
        super().__init__(**kwargs)
        check_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)

    def hybrid_forward(self, F, logits):
        if self.temperature == 0:
            return F.argmax(logits, axis=1)
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = F.min(F.topk(logits, k=self.top_k, axis=1, ret_typ="value"),
                        axis=1, keepdims=True)                                 # (N, 1)
            logits = F.where(F.broadcast_lesser(logits, kth),
                             F.ones_like(logits) * -1e30, logits)
        probs = F.softmax(logits, axis=1)                                     # (N, V)
        if self.top_p < 1.0:
            ranked = F.sort(probs, axis=1, is_ascend=False)
            before = F.cumsum(ranked, axis=1) - ranked    # mass strictly above each rank
            # Keep ranks while the mass above them is < top_p; the smallest kept
            # probability is the cut-off.
            kept = F.where(before < self.top_p, ranked, F.ones_like(ranked) * 2.0)
            cutoff = F.min(kept, axis=1, keepdims=True)                        # (N, 1)
            probs = F.where(F.broadcast_lesser(probs, cutoff), F.zeros_like(probs), probs)
            probs = F.broadcast_div(probs, F.sum(probs, axis=1, keepdims=True))
        return F.cast(F.sample_multinomial(probs), "float32")


class CharRNNStepper(HybridBlock):
    """One generation step of a CharRNN: ids ``(N,)`` + states -> (ids, states).

    Built from a model's current weights.  For rnn/lstm each layer's input and
    recurrent matrices are joined once, here, into ``[W_i2h | W_h2h]`` with
    summed biases, so a step is one matrix-vector product per layer.  gru keeps
    them apart (its reset gate scales the recurrent term and its bias).

    With ``sampler=None`` the step returns log-probabilities ``(N, V)``
    instead of ids (used by beam search).
    States have the model's shapes, ``(1, N, H)`` each.
    """

    def __init__(self, model, sampler=None, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.num_hidden = model.mode, model.num_hidden
        self.num_layers, self.per_layer = model.num_layers, model.states_per_layer
        self.sampler = sampler
        self.vocab_size, self.num_embed = model.embedding.weight.shape
        with self.name_scope():
            self.embed_weight = self.params.get_constant(
                "embed_weight", model.embedding.weight.data())
            self.decoder_weight = self.params.get_constant(
                "decoder_weight", model.decoder.weight.data())
            self.decoder_bias = self.params.get_constant(
                "decoder_bias", model.decoder.bias.data())
            self._layer_params = []
            for i, layer in enumerate(model.layers):
                w = layer.unpack()
                if self.mode == "gru":
                    names = {"i2h_w": w[("i2h_weight", 0)], "h2h_w": w[("h2h_weight", 0)],
                             "i2h_b": w[("i2h_bias", 0)], "h2h_b": w[("h2h_bias", 0)]}
                else:
                    names = {"w": mx.nd.concat(w[("i2h_weight", 0)], w[("h2h_weight", 0)], dim=1),
                             "b": w[("i2h_bias", 0)] + w[("h2h_bias", 0)]}
                for key, value in names.items():
                    name = "l%d_%s" % (i, key)
                    setattr(self, name, self.params.get_constant(name, value))
                self._layer_params.append(sorted("l%d_%s" % (i, key) for key in names))
            if sampler is not None:
                self.register_child(sampler)

    def hybrid_forward(self, F, ids, *states, **weights):
        H, G = self.num_hidden, num_gates(self.mode)
        x = F.Embedding(ids, weights["embed_weight"], input_dim=self.vocab_size,
                        output_dim=self.num_embed)                            # (N, E)
        new_states = []
        for i in range(self.num_layers):
            prev = [F.reshape(s, (-3, -2)) for s in
                    states[i * self.per_layer:(i + 1) * self.per_layer]]     # (N, H) each
            if self.mode == "gru":
                layer_states = cell_step(F, "gru", x, prev, weights["l%d_i2h_w" % i],
                                         weights["l%d_h2h_w" % i], weights["l%d_i2h_b" % i],
                                         weights["l%d_h2h_b" % i], H)
            else:
                gates = F.FullyConnected(F.concat(x, prev[0], dim=1), weights["l%d_w" % i],
                                         weights["l%d_b" % i], num_hidden=G * H)  # (N, G*H)
                layer_states = cell_gates(F, self.mode, gates, None, prev)
            x = layer_states[0]
            new_states.extend(F.expand_dims(s, axis=0) for s in layer_states)
        logits = F.FullyConnected(x, weights["decoder_weight"], weights["decoder_bias"],
                                  num_hidden=self.vocab_size)                 # (N, V)
        if self.sampler is None:
            return F.log_softmax(logits, axis=1), new_states
        return self.sampler(logits), new_states


def default_prompt(vocab, stop_at_eos=False):
    """What generation starts from when no prompt is given: nothing after
    the end mark for whole samples, else a newline (a line start), else the
    vocabulary's first character."""
    if stop_at_eos:
        return ""
    return "\n" if "\n" in vocab.index else vocab.chars[0]


def _encode_prompt(vocab, prompt):
    if not prompt:
        raise MXGenError("the prompt must contain at least one character")
    return vocab.encode(prompt)


def _prime(model, prompt_ids, batch_size, ctx):
    """Run all but the last prompt character through the fused model."""
    states = model.begin_state(batch_size, ctx=ctx)
    if len(prompt_ids) > 1:
        data = mx.nd.array(np.repeat(prompt_ids[:-1, None], batch_size, axis=1), ctx=ctx)
        _, states = model(data, *states)                                   # (T, N) ids
    last = mx.nd.full((batch_size,), float(prompt_ids[-1]), ctx=ctx)
    return last, states


_D = GenerateConfig


def generate(model: HybridBlock, vocab: "Vocab", prompt: str, length: int,
             temperature: float = _D.temperature, top_k: int = _D.top_k,
             top_p: float = _D.top_p, num_samples: int = _D.num_samples, beam: int = _D.beam,
             method: str = _D.method, window: int = _D.window, seed: Optional[int] = _D.seed,
             ctx: Optional[mx.Context] = None, native: Optional[bool] = None,
             stop_at_eos: bool = _D.stop_at_eos, dtype: str = _D.dtype) -> List[str]:
    """Continue ``prompt`` by ``length`` characters.

    Parameters
    ----------
    model : CharRNN (initialised; hybridized or not)
    vocab : Vocab
    prompt : str
        Any length >= 1.  Characters outside the vocabulary raise MXGenError
        naming them (unless the vocabulary has an unknown token).
    length : int
        Characters to generate after the prompt.
    temperature, top_k, top_p : sampling settings (temperature 0 = greedy).
    num_samples : int
        Independent continuations, generated together as one batch.
    beam : int
        Beam width; > 0 selects beam search (deterministic, sampling ignored),
        returning the ``num_samples`` best beams (``beam >= num_samples``).
    method : {'stateful', 'window'}
    window : int
        Context length of the window method.
    seed : int or None
        Seeds MXNet's RNG first, so the same call gives the same text.
    native : bool or None
        Stateful generation on the CPU can run all steps in one call of
        mxgen's native operator (``True``: required; ``False``: never;
        ``None``: where it measures faster than the hybridized loop for this
        model and batch on this machine, see :func:`generation_kernel`).
        Greedy output is identical either way; sampled output is
        reproducible under a seed on each path, but the two paths draw
        differently.
    dtype : {'auto', 'float32', 'bfloat16'}
        What the native operator multiplies in: bfloat16 weights and inputs
        with float32 sums (half the weight bytes a step streams) or float32;
        ``'auto'``: bfloat16 where the CPU has AVX512_BF16 and it measures
        faster here.  Greedy bfloat16 text follows the float32 text until
        the two most likely characters are within bfloat16 rounding of
        each other.
    stop_at_eos : bool
        For a model trained on samples (``--samples``; its vocabulary has an
        end mark): start at the beginning of a sample (the end mark, then
        ``prompt``, which may be empty) and end each sample at its first end
        mark, ``length`` being the cap.  A returned sample shorter than
        ``len(prompt) + length`` ended by itself.

    Returns
    -------
    list of str
        ``num_samples`` strings, each the prompt followed by its continuation.
    """
    check_sampling(temperature, top_k, top_p)
    if length < 0:
        raise MXGenError("length must be >= 0, got %r" % length)
    if num_samples < 1:
        raise MXGenError("num_samples must be >= 1, got %r" % num_samples)
    if top_k > len(vocab):
        raise MXGenError("top_k=%d exceeds the vocabulary size %d" % (top_k, len(vocab)))
    prompt_ids = prompt_ids_for(vocab, prompt, stop_at_eos)
    stop = vocab.eos_id if stop_at_eos else None
    ctx = ctx or model.embedding.weight.list_ctx()[0]
    if seed is not None:
        mx.random.seed(seed)
    with mx.autograd.predict_mode():
        if beam:
            if beam < num_samples:
                raise MXGenError("beam width %d is smaller than num_samples %d" % (beam, num_samples))
            ids = _beam_search(model, prompt_ids, length, beam, num_samples, ctx)
        elif method == "window":
            ids = _window(model, prompt_ids, length, Sampler(temperature, top_k, top_p),
                          num_samples, window, ctx)
        elif method == "stateful":
            use_native, dtype = _kernel(native, dtype, model, ctx, num_samples)
            if length > 0 and use_native:
                ids = _stateful_native(model, prompt_ids, length, temperature, top_k, top_p,
                                       num_samples, ctx, dtype)
            else:
                ids = _stateful(model, prompt_ids, length, Sampler(temperature, top_k, top_p),
                                num_samples, ctx, stop)
        else:
            raise MXGenError("unknown generation method %r (stateful or window)" % method)
    return texts_from(vocab, prompt, ids, stop)


def prompt_ids_for(vocab, prompt, stop_at_eos=False):
    """The ids to prime with: the prompt's, after the end mark when
    generating whole samples (``stop_at_eos``; the prompt may be empty)."""
    if not stop_at_eos:
        return _encode_prompt(vocab, prompt)
    if vocab.eos_id is None:
        raise MXGenError("--stop-at-eos needs a model trained on samples (train-text"
                         " --samples ...): this vocabulary has no end-of-sample mark")
    return np.concatenate([[vocab.eos_id], vocab.encode(prompt or "")]).astype(np.int64)


def texts_from(vocab, prompt, rows, stop=None):
    """Generated id rows -> prompt + text, each cut before its first ``stop``."""
    if stop is not None:
        rows = [row[:np.flatnonzero(row == stop)[0]] if (row == stop).any() else row
                for row in rows]
    return [(prompt or "") + vocab.decode(row) for row in rows]


def _stateful(model, prompt_ids, length, sampler, num_samples, ctx, stop=None):
    stepper = CharRNNStepper(model, sampler)
    stepper.collect_params().initialize(ctx=ctx)
    stepper.hybridize(static_alloc=True)
    ids, states = _prime(model, prompt_ids, num_samples, ctx)
    out, ended = [], None
    for t in range(length):
        ids, states = stepper(ids, *states)           # no host sync: ids stay on device
        out.append(ids)
        if stop is not None:
            hit = ids == stop
            ended = hit if ended is None else mx.nd.maximum(ended, hit)
            # every 16 steps, one sync: stop once every sample has ended
            if t % 16 == 15 and ended.min().asscalar() > 0:
                break
    if not out:
        return np.zeros((num_samples, 0), dtype=np.int64)
    return mx.nd.stack(*out, axis=1).asnumpy().astype(np.int64)   # (N, length)


def generation_kernel(model, num_samples=1, ctx=None, dtype="auto", native=None):
    """``(native, dtype, reason)``: whether generation runs mxgen's native
    operator for this model and batch here (``native=None``: where it
    measures faster than the hybridized per-step loop), and in which
    precision (``dtype='auto'``: bfloat16 where the kernels have AVX512_BF16
    and it measures faster than the float32 winner).  Measured once per
    machine and shape (see :mod:`mxgen._calibrate`)."""
    ctx = ctx or model.embedding.weight.list_ctx()[0]
    if dtype not in GENERATION_DTYPES:
        raise MXGenError("generation runs in %s, not %r" % (", ".join(GENERATION_DTYPES), dtype))
    if dtype == "float16":
        raise MXGenError("--dtype float16 is half precision for GPUs; on a CPU use bfloat16"
                         if ctx.device_type == "cpu" else
                         "float16 generation is not built yet: generation on a GPU runs the"
                         " float32 hybridized loop (--dtype float32 or auto)")
    shape = {"mode": model.mode, "vocab_size": model.config.vocab_size,
             "num_embed": model.config.num_embed, "num_hidden": model.num_hidden,
             "num_layers": model.num_layers, "batch": int(num_samples)}
    if native is False:
        impl, reason = "loop", "native=False given"
    else:
        measure = ("generate", shape, "mxgen._timing:generation", "mxgen_char_rnn_generate",
                   "the hybridized per-step loop")
        impl, reason = _calibrate.explain_impl(
            "generation", "native" if native else "auto", ("auto", "loop", "native"), "loop",
            "mxgen_char_rnn_generate", "native generation runs", [ctx], None, measure)
    if dtype == "float32" or (dtype == "auto" and (impl == "loop" and native is not None)):
        return impl == "native", "float32", reason
    if dtype == "bfloat16":
        if impl != "native":
            if native is False or not _native.available("mxgen_char_rnn_generate") or \
                    ctx.device_type != "cpu":
                raise MXGenError("bfloat16 generation runs on mxgen's native CPU op, which is"
                                 " not available here: %s" % reason)
        return True, "bfloat16", "bfloat16 given (%s)" % (
            "%s kernels" % _native.isa() if _native.bf16_hardware() else
            "emulated: no bfloat16 instructions, slower than float32")
    if ctx.device_type != "cpu" or not _native.available("mxgen_char_rnn_generate"):
        return impl == "native", "float32", reason
    if not _native.bf16_hardware():
        return impl == "native", "float32", reason + "; float32: the %s kernels have no" \
            " bfloat16 instructions" % _native.isa()
    decision = _calibrate.decide(
        "generate_dtype", dict(shape, impl=impl), "mxgen._timing:generation_dtype",
        "mxgen_char_rnn_generate in bfloat16",
        "mxgen_char_rnn_generate in float32" if impl == "native"
        else "the float32 hybridized loop", "float32")
    if decision.impl == "native":
        return True, "bfloat16", decision.reason
    return impl == "native", "float32", reason


def _kernel(native, dtype, model, ctx, num_samples):
    """``(native, dtype)`` of a stateful generation call."""
    if native and not (ctx.device_type == "cpu" and
                       _native.available("mxgen_char_rnn_generate")):
        raise MXGenError("native generation requested but unavailable: %s"
                         % (_native.status()[2] or "needs a CPU context"))
    if native is False and dtype in ("auto", "float32"):
        return False, "float32"
    return generation_kernel(model, num_samples, ctx, dtype, native)[:2]


# The operator only reads its input states, so zero states are made once per
# model, batch size and device and kept (the last ones made, per model):
# creating them was four engine calls on every call, a few percent of a
# short batch-1 call.
_ZERO_STATES: "weakref.WeakKeyDictionary[HybridBlock, tuple]" = weakref.WeakKeyDictionary()


def _zero_states(model, num_samples, ctx):
    key = (num_samples, str(ctx))
    kept = _ZERO_STATES.get(model)
    if kept is None or kept[0] != key:
        kept = (key, model.begin_state(num_samples, ctx=ctx))
        _ZERO_STATES[model] = kept
    return kept[1]


def _stateful_native(model, prompt_ids, length, temperature, top_k, top_p, num_samples, ctx,
                     dtype="float32"):
    """All ``length`` steps in one native operator call (see kernels/).  On
    a CPU the operator primes the states with the prompt itself (no decoder
    for those steps, no graph call before it); on a GPU the model does."""
    if ctx.device_type == "cpu":
        ids = mx.nd.array(np.repeat(prompt_ids[None, :], num_samples, axis=0), ctx=ctx)
        states = _zero_states(model, num_samples, ctx)
    else:
        ids, states = _prime(model, prompt_ids, num_samples, ctx)
    args = ([ids] + list(states) + [model.embedding.weight.data(ctx)]
            + [layer.weights.data(ctx) for layer in model.layers]
            + [model.decoder.weight.data(ctx), model.decoder.bias.data(ctx)])
    outs = mx.nd.mxgen_char_rnn_generate(
        *args, mode=model.mode, num_layers=model.num_layers, num_hidden=model.num_hidden,
        length=length, temperature=temperature, top_k=top_k, top_p=top_p, dtype=dtype)
    return outs[0].asnumpy().astype(np.int64)                       # (N, length)


def _window(model, prompt_ids, length, sampler, num_samples, window, ctx):
    # The tutorial's method: no state is carried; each character re-reads the
    # last `window` characters from a zero state.
    sampler.hybridize(static_alloc=True)
    seqs = np.repeat(prompt_ids[None, :], num_samples, axis=0).astype(np.float32)  # (N, L)
    for _ in range(length):
        context = mx.nd.array(seqs[:, -window:].T, ctx=ctx)                          # (T, N)
        logits, _ = model(context, *model.begin_state(num_samples, ctx=ctx))
        nxt = sampler(logits[-1]).asnumpy()
        seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
    return seqs[:, len(prompt_ids):].astype(np.int64)


def _beam_search(model, prompt_ids, length, beam, num_samples, ctx):
    stepper = CharRNNStepper(model, sampler=None)
    stepper.collect_params().initialize(ctx=ctx)
    stepper.hybridize(static_alloc=True)
    ids, states = _prime(model, prompt_ids, 1, ctx)
    scores = np.zeros(1)                     # summed log-probability of each beam
    history = np.zeros((1, 0), dtype=np.int64)
    for _ in range(length):
        logp, states = stepper(ids, *states)
        logp = logp.asnumpy().astype(np.float64)                 # (beams, V)
        total = scores[:, None] + logp
        flat = np.argsort(-total, axis=None, kind="stable")[:beam]
        parent, char = np.divmod(flat, logp.shape[1])
        scores = total[parent, char]
        history = np.concatenate([history[parent], char[:, None]], axis=1)
        index = mx.nd.array(parent, ctx=ctx)
        states = [mx.nd.take(s, index, axis=1) for s in states]
        ids = mx.nd.array(char, ctx=ctx)
    return history[:num_samples]
