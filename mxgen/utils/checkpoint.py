"""One checkpoint format for every model family.

A run directory holds numbered checkpoint directories and two pointer files::

    out/
      checkpoints/ckpt-00000420/   one complete checkpoint (see below)
      latest                       JSON: {"dir": "checkpoints/ckpt-00000420"}
      best                         JSON: pointer to the best-validation checkpoint

A checkpoint directory holds ``config.json`` (family, model and training
configuration), ``progress.json`` (epoch, data position, step counters,
RNG seeds, best score), one or more ``*.params`` / ``*.states`` / ``*.nd``
files, any extra JSON (``vocab.json``), and last of all ``MANIFEST.json``:
the size and sha256 of every file, so that a missing or truncated file is
caught on load with its name.

Atomicity: a checkpoint is written into a temporary directory, fsynced and
renamed into place; the pointer files are replaced with ``os.replace``.
A crash at any moment leaves the previous checkpoint intact and pointed to.
"""
import hashlib
import json
import os
import shutil
import tempfile

from ..errors import MXGenError

__all__ = ["CheckpointWriter", "resolve", "read_manifest", "require_files", "read_json",
           "atomic_write_text",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"


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
        os.makedirs(self.parent, exist_ok=True)
        self.tmp_dir = tempfile.mkdtemp(dir=self.parent, prefix=".tmp-ckpt-")
        self.final_dir = os.path.join(self.parent, "ckpt-%08d" % step)

    def path(self, name):
        return os.path.join(self.tmp_dir, name)

    def write_json(self, name, obj):
        with open(self.path(name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            return False
        self.commit()
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
        if os.path.exists(self.final_dir):       # re-saving the same step: replace it
            trash = tempfile.mkdtemp(dir=self.parent, prefix=".trash-")
            os.rename(self.final_dir, os.path.join(trash, "old"))
            os.rename(self.tmp_dir, self.final_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.tmp_dir, self.final_dir)
        _fsync_dir(self.parent)

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
        ckpts = sorted(d for d in os.listdir(self.parent) if d.startswith("ckpt-"))
        for d in ckpts[:-self.keep] if self.keep else ckpts:
            full = os.path.normpath(os.path.join(self.parent, d))
            if full not in pinned:
                shutil.rmtree(full, ignore_errors=True)


def _pointer_target(run_dir, name):
    pointer = os.path.join(run_dir, name)
    try:
        with open(pointer, encoding="utf-8") as f:
            rel = json.load(f)["dir"]
    except FileNotFoundError:
        raise MXGenError("%s has no '%s' checkpoint pointer" % (run_dir, name)) from None
    except (ValueError, KeyError, TypeError):
        raise MXGenError("checkpoint pointer %s is corrupt" % pointer) from None
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
    if manifest.get("format") != FORMAT_VERSION:
        raise MXGenError("checkpoint %s has format %r; this mxgen reads format %d"
                         % (ckpt_dir, manifest.get("format"), FORMAT_VERSION))
    for name in set(files) | set(required):
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
