"""One checkpoint format for every model family.

A run directory holds numbered checkpoint directories and two pointer files::

    out/
      checkpoints/ckpt-00000420/   one complete checkpoint (see below)
      latest                       JSON: {"dir": "checkpoints/ckpt-00000420"}
      best                         JSON: pointer to the best-validation checkpoint

A checkpoint directory holds ``config.json`` (family, model and training
configuration), ``progress.json`` (epoch, data position, step counters,
best score), the parameters of each network (``*.params``, MXNet's NDArray
file format), each optimizer's state as ``<name>.states.nd`` (NDArrays) plus
``<name>.states.json`` (update counters), other arrays as ``*.nd``, any extra
JSON (``vocab.json``), and last of all ``MANIFEST.json``: the size and sha256
of every file, so that a missing or truncated file is caught on load with its
name.

Data only: nothing in a checkpoint is a Python pickle, and nothing here
unpickles.  Gluon's ``Trainer.save_states`` writes a pickle (loading one can
run arbitrary code), so optimizer states are written and read by
:func:`save_trainer` / :func:`load_trainer` instead, and a checkpoint that
holds a pickled state file is refused.

Atomicity: a checkpoint is written into a temporary directory, fsynced and
renamed to a name no other checkpoint has (a re-save of the same step gets a
revision suffix); then the pointer files are replaced with ``os.replace``.
A crash or a failed write at any moment leaves the previous checkpoint
intact and pointed to; leftover temporary directories are removed by the
next writer.
"""
import errno
import hashlib
import json
import os
import shutil
import tempfile

import mxnet as mx
import numpy as np

from ..errors import MXGenError, one_line

__all__ = ["CheckpointWriter", "resolve", "read_manifest", "require_files",
           "read_json", "atomic_write_text", "save_trainer", "load_trainer", "save_parameters",
           "load_parameters", "params_finite", "save_arrays", "FORMAT_VERSION"]

FORMAT_VERSION = 2       # 1: optimizer states were pickles (still readable for parameters)
READABLE_FORMATS = (1, 2)
MANIFEST = "MANIFEST.json"
_TEMP_PREFIXES = (".tmp-ckpt-", ".trash-")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    """Write a small text file atomically (temp file in the same dir + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


class CheckpointWriter:
    """Builds one checkpoint in a temp dir; :meth:`commit` makes it visible.

    Usage::

        with CheckpointWriter(run_dir, step) as ckpt:
            net.save_parameters(ckpt.path("model.params"))
            ckpt.write_json("config.json", {...})
        # committed here; ckpt.final_dir is the checkpoint directory
    """

    def __init__(self, run_dir, step, keep=2):
        self.run_dir, self.step, self.keep = run_dir, step, keep
        self.parent = os.path.join(run_dir, "checkpoints")
        try:
            os.makedirs(self.parent, exist_ok=True)
            _remove_leftovers(self.parent)
            self.tmp_dir = tempfile.mkdtemp(dir=self.parent, prefix=".tmp-ckpt-")
        except OSError as err:
            raise MXGenError("cannot write a checkpoint in %s: %s" % (self.parent, err)) from None
        self.final_dir = None

    def path(self, name):
        return os.path.join(self.tmp_dir, name)

    def write_json(self, name, obj):
        with open(self.path(name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.commit()
                return False
            except OSError as err:
                exc_type, exc = type(err), err
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if issubclass(exc_type, OSError):    # disk full, quota, I/O error: say so, lose nothing
            raise MXGenError("could not write the checkpoint of step %d in %s: %s; the previous"
                             " checkpoint is untouched" % (self.step, self.parent, exc)) from None
        return False

    def commit(self):
        files = {}
        for name in sorted(os.listdir(self.tmp_dir)):
            full = self.path(name)
            with open(full, "rb+") as f:
                os.fsync(f.fileno())
            files[name] = {"bytes": os.path.getsize(full), "sha256": _sha256(full)}
        self.write_json(MANIFEST, {"format": FORMAT_VERSION, "step": self.step, "files": files})
        with open(self.path(MANIFEST), "rb+") as f:
            os.fsync(f.fileno())
        _fsync_dir(self.tmp_dir)
        # A name no checkpoint has yet: replacing a directory in place cannot be
        # atomic, and 'latest' may point at the old one until point() runs.
        base = os.path.join(self.parent, "ckpt-%08d" % self.step)
        final, revision = base, 0
        while os.path.exists(final):
            revision += 1
            final = "%s.r%d" % (base, revision)
        os.rename(self.tmp_dir, final)
        _fsync_dir(self.parent)
        self.final_dir = final

    def point(self, name):
        """Make pointer file ``name`` (``latest`` / ``best``) refer to this checkpoint."""
        rel = os.path.relpath(self.final_dir, self.run_dir)
        atomic_write_text(os.path.join(self.run_dir, name), json.dumps({"dir": rel}) + "\n")

    def prune(self):
        """Delete old checkpoints, keeping the newest ``keep`` and any pointed to."""
        pinned = set()
        for name in ("latest", "best"):
            try:
                pinned.add(os.path.normpath(_pointer_target(self.run_dir, name)))
            except MXGenError:
                pass
        ckpts = sorted((d for d in os.listdir(self.parent) if _ckpt_order(d)[0] >= 0),
                       key=_ckpt_order)
        for d in ckpts[:-self.keep] if self.keep else ckpts:
            full = os.path.normpath(os.path.join(self.parent, d))
            if full not in pinned:
                shutil.rmtree(full, ignore_errors=True)


def _ckpt_order(name):
    """``ckpt-00000420`` < ``ckpt-00000420.r1`` < ``ckpt-00000420.r2`` < ``ckpt-00000421``
    < ``ckpt-100000000`` (steps compare as numbers, not as strings); a name
    that is not a checkpoint's sorts first, so it is never mistaken for the
    newest."""
    step, _, revision = name[len("ckpt-"):].partition(".r")
    if not name.startswith("ckpt-") or not step.isdigit() or (revision and
                                                              not revision.isdigit()):
        return (-1, 0)
    return (int(step), int(revision or 0))


def _remove_leftovers(parent):
    """Temporary directories of writers that were killed or failed."""
    for name in os.listdir(parent):
        if name.startswith(_TEMP_PREFIXES):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _pointer_target(run_dir, name):
    """The checkpoint directory pointer file ``name`` refers to; it must lie
    in the run's ``checkpoints`` folder (a pointer is data, never a way out
    of the run folder)."""
    pointer = os.path.join(run_dir, name)
    try:
        with open(pointer, encoding="utf-8") as f:
            rel = json.load(f)["dir"]
        if not isinstance(rel, str):
            raise TypeError(rel)
    except FileNotFoundError:
        raise MXGenError("%s has no '%s' checkpoint pointer" % (run_dir, name)) from None
    except (ValueError, KeyError, TypeError):
        raise MXGenError("checkpoint pointer %s is corrupt" % pointer) from None
    parent = os.path.realpath(os.path.join(run_dir, "checkpoints"))
    target = os.path.realpath(os.path.join(run_dir, rel))
    if os.path.dirname(target) != parent or not _ckpt_order(os.path.basename(target))[0] >= 0:
        raise MXGenError("checkpoint pointer %s refers to %r, which is not a checkpoint of this"
                         " run (%s/ckpt-*)" % (pointer, rel, os.path.join(run_dir, "checkpoints")))
    return os.path.join(run_dir, rel)


def resolve(path, prefer="best"):
    """Find a checkpoint directory from a run dir or a checkpoint dir.

    A run dir is followed through its ``prefer`` pointer (``best`` or
    ``latest``), falling back to the other one.
    """
    if not os.path.exists(path):
        raise MXGenError("checkpoint not found: %s" % path)
    if os.path.isfile(os.path.join(path, MANIFEST)):
        return path
    order = [prefer, "latest" if prefer == "best" else "best"]
    for name in order:
        if os.path.exists(os.path.join(path, name)):
            target = _pointer_target(path, name)
            if not os.path.isdir(target):
                raise MXGenError("checkpoint pointer %s/%s refers to missing %s"
                                 % (path, name, target))
            return target
    raise MXGenError("%s is not a checkpoint: no MANIFEST.json and no best/latest pointer" % path)


def read_manifest(ckpt_dir, required=()):
    """Verify a checkpoint directory; raise MXGenError naming any bad file."""
    manifest_path = os.path.join(ckpt_dir, MANIFEST)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
    except FileNotFoundError:
        raise MXGenError("checkpoint %s is incomplete: %s is missing" % (ckpt_dir, MANIFEST)) \
            from None
    except (ValueError, KeyError, TypeError):
        raise MXGenError("checkpoint manifest %s is corrupt" % manifest_path) from None
    if manifest.get("format") not in READABLE_FORMATS:
        raise MXGenError("checkpoint %s has format %r; this mxgen reads formats %s"
                         % (ckpt_dir, manifest.get("format"),
                            ", ".join(map(str, READABLE_FORMATS))))
    if not isinstance(files, dict):
        raise MXGenError("checkpoint manifest %s is corrupt" % manifest_path)
    for name in set(files) | set(required):
        if not _plain_name(name):
            raise MXGenError("checkpoint manifest %s names %r, which is not a file of the"
                             " checkpoint folder" % (manifest_path, name))
        full = os.path.join(ckpt_dir, name)
        if name not in files or not os.path.isfile(full):
            raise MXGenError("checkpoint %s is missing %s" % (ckpt_dir, name))
        size = os.path.getsize(full)
        if size != files[name]["bytes"]:
            raise MXGenError("checkpoint file %s is truncated or altered: %d bytes, expected %d"
                             % (full, size, files[name]["bytes"]))
        if _sha256(full) != files[name]["sha256"]:
            raise MXGenError("checkpoint file %s is corrupt (sha256 mismatch)" % full)
    return manifest


def _plain_name(name):
    """A file name without any folder part (no separator, not . or ..)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and os.sep not in name and (os.altsep is None or os.altsep not in name)
            and "\0" not in name)


def require_files(manifest, ckpt_dir, names):
    """After :func:`read_manifest`: raise MXGenError if any of ``names`` is absent."""
    for name in names:
        if name not in manifest["files"]:
            raise MXGenError("checkpoint %s is missing %s" % (ckpt_dir, name))


def read_json(ckpt_dir, name):
    full = os.path.join(ckpt_dir, name)
    try:
        with open(full, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MXGenError("checkpoint %s is missing %s" % (ckpt_dir, name)) from None
    except ValueError as err:
        raise MXGenError("checkpoint file %s is not valid JSON: %s" % (full, err)) from None


# ---- parameters ---------------------------------------------------------------
# Reading a live weight array back to the host (asnumpy, copyto, save_parameters)
# makes MXNet reorder it out of oneDNN's layout in place, and the fused RNN then
# runs ~25% slower for the rest of training.  So checkpoint code reads weights
# only through an operator that writes a fresh array.

def _snapshot(param):
    data = param.list_data()[0]
    return mx.nd.identity(data) if data.stype == "default" else data.copy()


def params_finite(params):
    """True if every parameter value is finite (checked before saving)."""
    arrays = [p.list_data()[0] for p in params]
    sums = mx.nd.multi_sum_sq(*arrays, num_arrays=len(arrays))
    return bool(np.isfinite(sums.asnumpy()).all())


def save_arrays(path, arrays):
    """``mx.nd.save(path, arrays)``, then read back and compared.

    ``mx.nd.save`` ignores errors of its last write and of closing the file,
    so on a full disk it can leave a short file and report success; a short
    or damaged file raises OSError here (the checkpoint is then abandoned and
    the previous one stays pointed to)."""
    arrays = {key: value.as_in_context(mx.cpu()) for key, value in arrays.items()}
    mx.nd.save(path, arrays)
    try:
        back = mx.nd.load(path) if arrays else {}
        same = (isinstance(back, dict) and sorted(back) == sorted(arrays) and all(
            back[k].shape == v.shape and back[k].dtype == v.dtype
            and np.array_equal(back[k].asnumpy(), v.asnumpy()) for k, v in arrays.items()))
    except mx.base.MXNetError:
        same = False
    if not same:
        raise OSError(errno.EIO, "%s did not read back as written (a short write: is the disk"
                                 " full?)" % path)


def save_parameters(block, path):
    """``block.save_parameters(path)`` without disturbing oneDNN weight layouts;
    the file is the same format (``load_parameters`` reads it)."""
    params = block._collect_params_with_prefix()
    save_arrays(path, {key: _snapshot(p) for key, p in params.items()})


def load_parameters(block, path, ctx, what="this model"):
    """``block.load_parameters`` with a one-line error when the file does not fit."""
    try:
        block.load_parameters(path, ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as err:
        raise MXGenError("parameters in %s do not fit %s (different shape or architecture, or"
                         " a damaged file?): %s" % (path, what, one_line(err))) from None



# ---- optimizer states, without pickle ---------------------------------------

def _updaters(trainer):
    """The updaters holding a Gluon Trainer's optimizer states."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return trainer._updaters


def _encode_key(key):
    return ("i:%d" % key) if isinstance(key, int) else "s:%s" % key


def _decode_key(text):
    kind, _, value = text.partition(":")
    return int(value) if kind == "i" else value


def _flatten_state(state, prefix, arrays):
    """A state (NDArray, None, or nested tuples/lists of them) -> JSON layout."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[prefix] = state.as_in_context(mx.cpu())
        return prefix
    if isinstance(state, (tuple, list)):
        return {"tuple" if isinstance(state, tuple) else "list":
                [_flatten_state(s, "%s.%d" % (prefix, j), arrays) for j, s in enumerate(state)]}
    raise MXGenError("cannot checkpoint an optimizer state of type %s" % type(state).__name__)


def _unflatten_state(layout, arrays, where):
    if layout is None:
        return None
    if isinstance(layout, str):
        try:
            return arrays[layout]
        except KeyError:
            raise MXGenError("%s lacks the optimizer state array %r" % (where, layout)) from None
    if isinstance(layout, dict) and len(layout) == 1:
        kind, items = next(iter(layout.items()))
        if kind in ("tuple", "list") and isinstance(items, list):
            parts = [_unflatten_state(item, arrays, where) for item in items]
            return tuple(parts) if kind == "tuple" else parts
    raise MXGenError("%s has a malformed optimizer state layout" % where)


def save_trainer(trainer, writer, name):
    """Write ``trainer``'s optimizer state into checkpoint ``writer`` as
    ``<name>.states.nd`` (every state array) and ``<name>.states.json``
    (layout and update counters)."""
    updater = _updaters(trainer)[0]
    if updater is None:         # dist_async: the state lives on the parameter servers
        save_arrays(writer.path(name + ".states.nd"), {})
        writer.write_json(name + ".states.json", {
            "optimizer": type(trainer._optimizer).__name__.lower(), "on_servers": True})
        return
    opt = updater.optimizer
    arrays, layout = {}, {}
    for key, state in updater.states.items():
        layout[_encode_key(key)] = _flatten_state(state, "s%s" % _encode_key(key), arrays)
    save_arrays(writer.path(name + ".states.nd"), arrays)
    writer.write_json(name + ".states.json", {
        "optimizer": type(opt).__name__.lower(),
        "num_update": opt.num_update,
        "index_update_counts": {str(dev): {_encode_key(k): n for k, n in counts.items()}
                                for dev, counts in opt._all_index_update_counts.items()},
        "lr": opt.lr, "wd": opt.wd, "states": layout})


def load_trainer(trainer, ckpt_dir, name):
    """Restore what :func:`save_trainer` wrote; never unpickles.  Returns
    False when the checkpoint holds no state to restore (it was trained with
    the optimizer on the parameter servers), True otherwise.

    A checkpoint holding Gluon's pickled ``<name>.states`` is refused.
    """
    if os.path.exists(os.path.join(ckpt_dir, name + ".states")) and not os.path.exists(
            os.path.join(ckpt_dir, name + ".states.json")):
        raise MXGenError(
            "checkpoint %s stores optimizer states as a Python pickle (%s.states); mxgen never"
            " unpickles (loading a pickle can run arbitrary code), so it cannot resume from it."
            " Its parameters still load for generation and sampling; start a new run to train"
            % (ckpt_dir, name))
    where = os.path.join(ckpt_dir, name + ".states.json")
    meta = read_json(ckpt_dir, name + ".states.json")
    if isinstance(meta, dict) and meta.get("on_servers") is True:
        return False
    kv = trainer._kvstore_params.get("kvstore")
    if trainer._kvstore_params.get("update_on_kvstore") and isinstance(kv, mx.kv.KVStore) \
            and kv.type.startswith("dist"):
        return False            # this run's optimizer state lives on the servers
    try:
        arrays = mx.nd.load(os.path.join(ckpt_dir, name + ".states.nd"))
    except mx.base.MXNetError:
        raise MXGenError("checkpoint file %s is not an NDArray file"
                         % os.path.join(ckpt_dir, name + ".states.nd")) from None
    try:
        layout, counts = meta["states"], meta["index_update_counts"]
        expected = type(_updaters(trainer)[0].optimizer).__name__.lower()
        if meta["optimizer"] != expected:
            raise MXGenError("%s holds %s optimizer states; this run uses %s"
                             % (where, meta["optimizer"], expected))
        for updater in _updaters(trainer):
            # each updater (one per device) updates its states in place: own copies
            own = {key: value.copy() for key, value in arrays.items()}
            updater.states = {_decode_key(k): _unflatten_state(v, own, where)
                              for k, v in layout.items()}
            updater.states_synced = dict.fromkeys(updater.states, False)   # moved on first use
        opt = _updaters(trainer)[0].optimizer
        opt.num_update = int(meta["num_update"])
        opt._all_index_update_counts = {int(dev): {_decode_key(k): int(n) for k, n in c.items()}
                                        for dev, c in counts.items()}
        opt._all_index_update_counts.setdefault(0, {})
        opt._index_update_count = opt._all_index_update_counts[0]
        opt.lr, opt.wd = float(meta["lr"]), float(meta["wd"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise MXGenError("checkpoint file %s is malformed" % where) from None
    return True
