"""One registry of model families.

A family (the character model, the DCGAN generator, the style network, and
whatever comes next) is one :class:`Family` entry, registered by its own
module with :func:`register`: its model config dataclass, how to build the
network a checkpoint stores, which files a checkpoint holds, what its
export graphs are.  Checkpoints, :func:`load`, ``mxgen export`` and the
commands that open a checkpoint (``generate``, ``sample-gan``, ``stylize
--model``) all ask this registry; nothing else knows the list of families.

A new family is one module that defines its network and config and calls
:func:`register` (and a training loop on :class:`mxgen.train.common.Run`,
if it trains); ``tests/test_registry.py`` registers a toy family in a few
lines and gets checkpoints, loading, export and exact resume from it.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import mxnet as mx

from ..errors import MXGenError
from ..utils import checkpoint as ckpt

__all__ = ["Family", "Loaded", "ExportGraph", "register", "family", "families", "load",
           "open_family_checkpoint"]


@dataclass
class ExportGraph:
    """One graph of an export: ``block`` run on ``example`` inputs, named
    ``name``, its inputs called ``inputs``, ``describes`` saying what it
    takes and gives."""
    name: str
    block: Any
    example: tuple
    inputs: list
    describes: str


@dataclass
class Loaded:
    """What :func:`load` returns for any family: the network, its config
    (the family's config dataclass), the vocabulary where the family has
    one, the checkpoint folder and its ``config.json``, and which weights
    were loaded (``trained``, or ``ema``: their moving average)."""
    model: Any
    config: Any
    vocab: Any = None
    ckpt_dir: Optional[str] = None
    meta: Optional[dict] = None
    family: Optional["Family"] = None
    weights: str = "trained"


@dataclass
class Family:
    """A model family.

    ``name``: the ``family`` in every checkpoint's ``config.json``;
    ``title``: how messages call it; ``config``: the model config dataclass
    (``config.json``'s ``model`` entry, loaded with ``config(**entry)``);
    ``build(config)``: the network a checkpoint's ``params`` file holds
    (uninitialised); ``params``: that file's name (its stem names the export
    graph); ``resume_files``: the other files a training checkpoint holds;
    ``vocab``: whether checkpoints hold ``vocab.json``; ``prepare(loaded,
    ctx)``: called after loading (kernel choice, hybridize, checks);
    ``example(config)``: example inputs of the exported graph;
    ``graphs(loaded, native)``: the export graphs, for families with more
    than the one default graph; ``export_info(loaded)``: what export.json
    says of the model (default: the config's fields).
    """
    name: str
    title: str
    config: type
    build: Callable
    params: str = "model.params"
    resume_files: Tuple[str, ...] = ()
    vocab: bool = False
    prepare: Optional[Callable] = None
    example: Optional[Callable] = None
    describes: str = ""
    graphs: Optional[Callable] = None
    export_info: Optional[Callable] = None
    ema_params: Optional[str] = None

    @property
    def files(self):
        """The files any checkpoint of this family holds besides config.json."""
        return (self.params,) + (("vocab.json",) if self.vocab else ())

    def config_from(self, meta, ckpt_dir):
        """The model config recorded in a checkpoint's ``config.json``."""
        try:
            config = self.config(**meta["model"])
            return config.validate() if hasattr(config, "validate") else config
        except (TypeError, KeyError) as err:
            raise MXGenError("checkpoint %s has a malformed model config: %s"
                             % (ckpt_dir, err)) from None

    def export_graphs(self, loaded, native=False):
        """``[ExportGraph]`` of a loaded checkpoint."""
        if self.graphs is not None:
            return self.graphs(loaded, native)
        name = os.path.splitext(self.params)[0]
        return [ExportGraph(name, loaded.model, self.example(loaded.config), ["data"],
                            self.describes)]

    def info(self, loaded):
        """What ``export.json`` records about the model."""
        if self.export_info is not None:
            return self.export_info(loaded)
        return dataclasses.asdict(loaded.config)


_FAMILIES: Dict[str, Family] = {}


def register(entry: Family) -> Family:
    """Add a family (its module calls this once, at import)."""
    if entry.name in _FAMILIES and _FAMILIES[entry.name] is not entry:
        raise ValueError("model family %r is registered twice" % entry.name)
    _FAMILIES[entry.name] = entry
    return entry


def families() -> Dict[str, Family]:
    """``{name: Family}`` of every registered family."""
    return dict(_FAMILIES)


def family(name: str) -> Family:
    """The family called ``name``; MXGenError listing the known ones otherwise."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise MXGenError("unknown model family %r; mxgen knows %s"
                         % (name, ", ".join(sorted(_FAMILIES)))) from None


def open_family_checkpoint(path, expected=None, prefer="best", required=()):
    """``(ckpt_dir, meta, Family, manifest)`` of a verified checkpoint;
    ``expected`` (a family name) refuses a checkpoint of another family,
    naming both."""
    ckpt_dir = ckpt.resolve(path, prefer=prefer)
    manifest = ckpt.read_manifest(ckpt_dir, required=("config.json",))
    meta = ckpt.read_json(ckpt_dir, "config.json")
    found = meta.get("family") if isinstance(meta, dict) else None
    if expected is not None and found != expected:
        raise MXGenError("checkpoint %s holds a %r model, not a %s"
                         % (ckpt_dir, found, family(expected).title))
    if found not in _FAMILIES:
        raise MXGenError("checkpoint %s holds a %r model; mxgen knows %s"
                         % (ckpt_dir, found, ", ".join(sorted(_FAMILIES))))
    entry = _FAMILIES[found]
    ckpt.require_files(manifest, ckpt_dir, entry.files + tuple(required))
    return ckpt_dir, meta, entry, manifest


def load(path: str, ctx: Optional[mx.Context] = None, prefer: str = "best",
         family: Optional[str] = None, ema: Optional[bool] = None) -> Loaded:
    """Open a checkpoint (a run folder, through its ``prefer`` pointer, or a
    checkpoint folder) by the family recorded in it; returns :class:`Loaded`.
    ``family``: the family the caller needs (another one is an error).
    ``ema``: load the moving average of the weights (True: it must be there),
    the trained weights (False), or the average where the checkpoint has
    one (None)."""
    import mxnet as mx
    from ..data.vocab import Vocab
    ctx = ctx or mx.cpu()
    ckpt_dir, meta, entry, manifest = open_family_checkpoint(path, family, prefer)
    vocab = Vocab.from_dict(ckpt.read_json(ckpt_dir, "vocab.json")) if entry.vocab else None
    config = entry.config_from(meta, ckpt_dir)
    model = entry.build(config)
    has_ema = bool(entry.ema_params) and entry.ema_params in manifest["files"]
    if ema and not has_ema:
        raise MXGenError("checkpoint %s holds no moving average of its %s's weights (train"
                         " with --ema to have one)" % (ckpt_dir, entry.title))
    use_ema = has_ema if ema is None else bool(ema)
    loaded = Loaded(model, config, vocab, ckpt_dir, meta, entry,
                    weights="ema" if use_ema else "trained")
    ckpt.load_parameters(model, os.path.join(ckpt_dir, entry.ema_params if use_ema
                                             else entry.params), ctx, "this %s" % entry.title)
    if entry.prepare is not None:
        entry.prepare(loaded, ctx)
    return loaded
