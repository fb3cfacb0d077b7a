"""Export trained models to static graphs that load without mxgen's code.

``mxgen export --checkpoint RUN --out DIR`` writes, through
``HybridBlock.export``, one ``NAME-symbol.json`` + ``NAME-0000.params``
pair per graph and an ``export.json`` that says what each graph takes and
gives:

* character model: ``sequence`` (ids ``(T, N)`` + states -> logits
  ``(T, N, V)`` + states) and ``step`` (ids ``(N,)`` + states ->
  log-probabilities ``(N, V)`` + states, the graph generation runs), with
  ``vocab.json``;
* DCGAN: ``generator`` (noise ``(N, latent, 1, 1)`` -> images in [-1, 1],
  any N);
* style network: ``transformer`` (images ``(N, 3, H, W)`` in [0, 1]).

Any MXNet program reloads a graph with ``mx.gluon.SymbolBlock.imports``.
By default the graphs use MXNet's own operators only (the recurrent layers
as MXNet's fused RNN op), so no mxgen library is needed to run them;
``native=True`` keeps mxgen's native LSTM/GRU op where the model uses it,
and ``export.json`` then names the library, which :func:`load_exported`
checks before MXNet would fail on an unknown operator.

``fmt="onnx"`` writes ``NAME.onnx`` through ``mx.onnx.export_model``
instead (needs the ``onnx`` package): the DCGAN generator and the style
network convert; MXNet 1.9's converter has no rule for some of the
recurrent graph's operators, which is reported as a one-line error.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np

from . import _native
from .errors import MXGenError, one_line
from .fields import PRECISIONS, field
from .models import load
from .models.registry import open_family_checkpoint
from .nn.precision import exported_dtype, set_compute_dtype

__all__ = ["ExportConfig", "export", "load_exported", "FORMATS", "EXPORT_VERSION"]

FORMATS = ("mxnet", "onnx")
EXPORT_VERSION = 1


@dataclass
class ExportConfig:
    """What ``mxgen export`` (and :func:`export`) takes."""
    checkpoint: Optional[str] = field(None, "run directory (its best checkpoint) or a"
                                            " checkpoint directory", group="export",
                                      required=True)
    out: Optional[str] = field(None, "new folder for the export", group="export", required=True)
    format: str = field("mxnet", "MXNet symbol + params, or ONNX", group="export",
                        choices=FORMATS)
    force: bool = field(False, "replace --out if it holds an earlier export (and nothing"
                               " else)", group="export")
    native: bool = field(False, "keep mxgen's native recurrent op where the model uses it (the"
                                " export then needs mxgen's library to load)", group="export")
    dtype: str = field("float32", "what the exported graphs compute in: float32 (runs"
                                  " anywhere), bfloat16 (CPUs with AVX512_BF16 or AMX; a char"
                                  " model's recurrent layers only with --native) or float16"
                                  " (GPUs); weights are stored in float32 either way",
                       group="export", choices=PRECISIONS[1:])
    ema: bool = field(True, "export the moving average of the weights where the checkpoint"
                            " has one (a DCGAN trained with --ema)", group="export")


def _ops(symbol_file):
    with open(symbol_file, encoding="utf-8") as f:
        return sorted({node["op"] for node in json.load(f)["nodes"] if node["op"] != "null"})


def export(checkpoint, out, fmt=ExportConfig.format, force=ExportConfig.force,
           native=ExportConfig.native, dtype=ExportConfig.dtype, ema=ExportConfig.ema):
    """Export ``checkpoint`` (a run or checkpoint directory) into the new
    folder ``out``; returns the metadata written as ``export.json``.

    The folder is built under a temporary name and renamed into place, so a
    failed export leaves nothing half-written; an existing ``out`` is
    refused unless ``force``."""
    if fmt not in FORMATS:
        raise MXGenError("unknown export format %r; choose from %s" % (fmt, ", ".join(FORMATS)))
    if dtype not in PRECISIONS[1:]:
        raise MXGenError("unknown export dtype %r; choose from %s"
                         % (dtype, ", ".join(PRECISIONS[1:])))
    if fmt == "onnx" and dtype != "float32":
        raise MXGenError("--format onnx exports float32 graphs only (MXNet's ONNX exporter has"
                         " no form for its casts); drop --dtype %s" % dtype)
    ckpt_dir = open_family_checkpoint(checkpoint)[0]
    _check_replaceable(out, force, ckpt_dir)
    loaded = load(ckpt_dir, ema=None if ema else False)
    graphs = loaded.family.export_graphs(loaded, native)
    extra = {"vocab.json": loaded.vocab.to_dict()} if loaded.vocab is not None else {}
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
    try:
        meta = {"export_version": EXPORT_VERSION, "family": loaded.family.name, "format": fmt,
                "checkpoint": os.path.abspath(ckpt_dir), "mxnet": mx.__version__,
                "model": loaded.family.info(loaded), "weights": loaded.weights, "dtype": dtype,
                "graphs": {}}
        for graph in graphs:
            name, example = graph.name, graph.example
            _set_dtype(graph.block, dtype)
            graph.block.hybridize(static_alloc=True)       # export needs a traced graph
            with mx.autograd.predict_mode():
                graph.block(*example)
            prefix = os.path.join(tmp, name)
            graph.block.export(prefix)
            symbol_file, params_file = prefix + "-symbol.json", prefix + "-0000.params"
            ops = _ops(symbol_file)
            stored = {k.split(":", 1)[-1] for k in mx.nd.load(params_file)}
            inputs = [n for n in mx.sym.load(symbol_file).list_inputs() if n not in stored]
            entry = {"symbol": name + "-symbol.json", "params": name + "-0000.params",
                     "inputs": inputs, "input_roles": graph.inputs,
                     "describes": graph.describes, "ops": ops,
                     "native_ops": [op for op in ops if op in _native.OPS]}
            if fmt == "onnx":
                entry = dict(entry, **_to_onnx(name, symbol_file, params_file, example, tmp))
                os.unlink(symbol_file)
                os.unlink(params_file)
            meta["graphs"][name] = entry
        native_ops = sorted({op for g in meta["graphs"].values() for op in g["native_ops"]})
        meta["requires"] = ("mxgen's native library (libmxgen_kernels, for %s): import mxgen"
                            " in the process that loads this export" % ", ".join(native_ops)
                            if native_ops else None)
        for name, obj in dict(extra, **{"export.json": meta}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=1)
        if os.path.exists(out):
            # the old export (checked above: nothing but its own files) goes
            # only after the new one is complete
            _check_replaceable(out, force, ckpt_dir)
            trash = tempfile.mkdtemp(prefix=".trash-export-", dir=parent)
            os.replace(out, os.path.join(trash, "old"))
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _set_dtype(block, dtype):
    """Make an export graph compute in ``dtype``: its convolutions and dense
    layers, and its recurrent layers where their kernel has that precision
    (bfloat16: mxgen's native op; float16: MXNet's fused op)."""
    from .nn.rnn import FusedRNN
    set_compute_dtype(block, dtype, for_training=False)
    wants = {"bfloat16": "native", "float16": "fused"}.get(dtype)

    def visit(b):
        if isinstance(b, FusedRNN) and b.impl == wants:
            b.set_dtype(dtype)
    block.apply(visit)


# files mxgen writes into an export folder besides the graphs (sample-gan's
# default outputs go there for an export)
_EXPORT_EXTRAS = ("export.json", "vocab.json", "samples.png", "interpolation.png",
                  "interpolation.gif")


def _check_replaceable(out, force, ckpt_dir):
    """An existing ``out`` may be replaced only with ``force``, only if it is
    an mxgen export holding nothing but the export's own files, and never if
    the checkpoint being exported lies in it."""
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out):
        raise MXGenError("--out %s is a file; give a folder name for the export" % out)
    description = os.path.join(out, "export.json")
    try:
        with open(description, encoding="utf-8") as f:
            meta = json.load(f)
        graphs = meta["graphs"]
        own = set(_EXPORT_EXTRAS) | {g[key] for g in graphs.values()
                                     for key in ("symbol", "params", "onnx") if key in g}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        meta = None
    if meta is None:
        raise MXGenError("--out %s exists and is not an mxgen export (no valid export.json);"
                         " export into a new folder%s" % (out, " (--force replaces only an"
                                                               " earlier export)"
                                                          if force else ""))
    if not force:
        raise MXGenError("--out %s holds an earlier export; pass --force to replace it" % out)
    others = sorted(set(os.listdir(out)) - own)
    if others:
        raise MXGenError("--out %s holds files that are not part of its export (%s); move them"
                         " out first: --force replaces only the export itself"
                         % (out, ", ".join(others[:5])))
    real = os.path.realpath(out)
    if os.path.realpath(ckpt_dir).startswith(real + os.sep):
        raise MXGenError("--out %s holds the checkpoint being exported; export elsewhere"
                         % out)


def _to_onnx(name, symbol_file, params_file, example, folder):
    import importlib.util
    if importlib.util.find_spec("onnx") is None:
        raise MXGenError("--format onnx needs the onnx package: pip install onnx==1.14.1")
    path = os.path.join(folder, name + ".onnx")
    shapes = [tuple(a.shape) for a in example]
    try:
        mx.onnx.export_model(symbol_file, params_file, in_shapes=shapes,
                             in_types=[np.float32] * len(shapes), onnx_file_path=path,
                             dynamic=True,
                             dynamic_input_shapes=[(None,) + s[1:] for s in shapes])
    except Exception as err:                     # the converter raises anything
        raise MXGenError("--format onnx cannot express the %s graph: %s (%s); export it with"
                         " --format mxnet" % (name, one_line(err), type(err).__name__)) \
            from None
    return {"onnx": name + ".onnx"}


def load_exported(folder, name=None, ctx=None):
    """Reload graph ``name`` (default: the only one, or ``step`` of a
    character model) of an export as a ``SymbolBlock``: returns ``(block,
    meta)``.  Only MXNet is needed, and mxgen's native library when the
    export says so (checked here, with an error naming it)."""
    path = os.path.join(folder, "export.json")
    if not os.path.isfile(path):
        raise MXGenError("%s is not an mxgen export: export.json is missing" % folder)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        graphs = meta["graphs"]
    except (ValueError, KeyError, TypeError):
        raise MXGenError("%s is not a valid export description" % path) from None
    if meta.get("format") != "mxnet":
        raise MXGenError("%s holds %s files; load them with an ONNX runtime"
                         % (folder, meta.get("format")))
    name = name or ("step" if "step" in graphs else next(iter(graphs)))
    if name not in graphs:
        raise MXGenError("%s has no graph %r (it has %s)" % (folder, name, ", ".join(graphs)))
    graph = graphs[name]
    missing = [op for op in graph.get("native_ops", []) if not hasattr(mx.nd, op)]
    if missing:
        raise MXGenError("%s's %s graph uses mxgen's native ops (%s), which are not loaded in"
                         " this process: it needs mxgen's native library (libmxgen_kernels;"
                         " `mxgen info` shows whether it loads), or re-export without --native"
                         % (folder, name, ", ".join(missing)))
    with _quiet_imports():
        block = mx.gluon.SymbolBlock.imports(os.path.join(folder, graph["symbol"]),
                                             graph["inputs"],
                                             os.path.join(folder, graph["params"]),
                                             ctx=ctx or mx.cpu())
    return block, meta


class _quiet_imports:
    """SymbolBlock.imports warns about every constant it sees as unused."""

    def __enter__(self):
        import warnings
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def generate_exported(folder, prompt, length, temperature=1.0, top_k=0, top_p=1.0,
                      num_samples=1, seed=None, stop_at_eos=False, ctx=None, dtype="auto"):
    """``mxgen generate --exported``: stateful generation through an export's
    ``step`` graph (a SymbolBlock; no mxgen model class), sampling with
    :class:`~mxgen.generation.Sampler`.  Same arguments and result as
    :func:`~mxgen.generation.generate`'s stateful method (``prompt=None``:
    :func:`~mxgen.generation.default_prompt`; ``dtype`` must be ``'auto'`` or
    the export's own)."""
    from .data.vocab import Vocab
    from .generation import Sampler, check_sampling, default_prompt, prompt_ids_for, texts_from
    check_sampling(temperature, top_k, top_p)
    ctx = ctx or mx.cpu()
    step, meta = load_exported(folder, "step", ctx)
    if meta["family"] != "char_rnn":
        raise MXGenError("%s exports a %s, not a character model" % (folder, meta["family"]))
    exported_dtype(dtype, meta)
    try:
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            vocab = Vocab.from_dict(json.load(f))
    except (OSError, ValueError, KeyError) as err:
        raise MXGenError("%s: cannot read vocab.json (%s)" % (folder, err)) from None
    if prompt is None:
        prompt = default_prompt(vocab, stop_at_eos)
    ids = prompt_ids_for(vocab, prompt, stop_at_eos)
    if seed is not None:
        mx.random.seed(seed)
    info = meta["model"]
    states = [mx.nd.zeros((1, num_samples, info["num_hidden"]), ctx=ctx)
              for _ in range(info["states"])]
    sampler = Sampler(temperature, top_k, top_p)
    sampler.hybridize()
    with mx.autograd.predict_mode():
        for i in ids:                                         # prime with the prompt
            outs = step(mx.nd.full((num_samples,), float(i), ctx=ctx), *states)
            logp, states = outs[0], list(outs[1:])
        out = []
        for _ in range(length):
            nxt = sampler(logp)
            out.append(nxt)
            outs = step(nxt, *states)
            logp, states = outs[0], list(outs[1:])
    rows = mx.nd.stack(*out, axis=1).asnumpy().astype(np.int64) if out else \
        np.zeros((num_samples, 0), dtype=np.int64)
    return texts_from(vocab, prompt, rows, vocab.eos_id if stop_at_eos else None)
