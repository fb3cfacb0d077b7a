"""The run folder a training command writes: never someone else's, never twice.

Before a training run writes anything, :func:`claim` decides what its
``--out`` folder may become:

* absent or empty: a new run starts there;
* holding a run (a checkpoint pointer, checkpoints, or only the files a
  run writes before its first checkpoint): refused, naming the run's step,
  unless ``--resume`` continues it or ``--overwrite`` replaces it; the old
  run is then renamed aside (``OUT.replaced-<time>``), never deleted;
* holding anything else (a folder of the user's): refused, with or without
  ``--overwrite``;
* a file: refused.

The writer of a run holds an exclusive lock on ``OUT/.mxgen.lock`` (an
``flock``, released by the kernel when the process ends, however it ends),
so a second run on the same folder is refused with the first one's pid
instead of pruning its checkpoints and removing its temporary files.
"""
import errno
import fcntl
import os
import time

from ..errors import MXGenError

__all__ = ["claim", "RunLock", "describe", "LOCK_NAME", "RUN_ENTRIES"]

LOCK_NAME = ".mxgen.lock"
# what mxgen itself writes at the top of a run folder (train-* and sample-gan)
RUN_ENTRIES = frozenset({"latest", "best", "checkpoints", "metrics.jsonl", "loss.png",
                         "samples", "tensorboard", "samples.png", "interpolation.png",
                         "interpolation.gif", LOCK_NAME})


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.mxgen.lock`` holding
    this process's pid."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_NAME)
        try:
            self.file = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise MXGenError("cannot write in %s: %s" % (folder, err.strerror)) from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            self.file = None
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise MXGenError("cannot lock %s: %s" % (self.path, err.strerror)) from None
            raise MXGenError("%s is in use by another mxgen run (pid %s); wait for it to end or"
                             " give another --out" % (folder, holder)) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write("%d\n" % os.getpid())
        self.file.flush()

    def release(self):
        if self.file is not None:
            self.file.close()          # closing the descriptor drops the flock
            self.file = None

    def __del__(self):
        self.release()


def _run_step(folder):
    """The step of the run's latest checkpoint, or None without one."""
    from . import checkpoint as ckpt
    ckpt_dir = ckpt.resolve(folder, prefer="latest")
    progress = ckpt.read_json(ckpt_dir, "progress.json")
    return int(progress["step"])


def describe(folder):
    """``(kind, step)``: kind is ``absent``, ``file``, ``empty``, ``run`` or
    ``other``; ``step`` the latest checkpoint's step of a run (None if it
    has none or it cannot be read)."""
    if not os.path.lexists(folder):
        return "absent", None
    if not os.path.isdir(folder):
        return "file", None
    entries = set(os.listdir(folder)) - {LOCK_NAME}
    if not entries:
        return "empty", None
    is_run = {"latest", "best", "checkpoints"} & entries or entries <= RUN_ENTRIES
    if not is_run:
        return "other", None
    try:
        return "run", _run_step(folder)
    except (MXGenError, OSError, KeyError, TypeError, ValueError):
        return "run", None


def _holds_run(folder, step):
    if step is None:
        return "%s holds a run with no readable checkpoint" % folder
    return "%s holds a run at step %d" % (folder, step)


def _aside(folder):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = "%s.replaced-%s" % (os.path.normpath(folder), stamp)
    n = 1
    while os.path.lexists(target):
        n += 1
        target = "%s.replaced-%s-%d" % (os.path.normpath(folder), stamp, n)
    return target


def claim(folder, resume=False, overwrite=False, log=None):
    """Make ``folder`` this process's run folder and lock it; returns the
    :class:`RunLock`.  Raises MXGenError, before writing anything, when the
    folder may not be used (see the module docstring)."""
    if resume and overwrite:
        raise MXGenError("--resume continues the run in --out and --overwrite replaces it;"
                         " pass one of them")
    kind, step = describe(folder)
    if kind == "file":
        raise MXGenError("--out %s is a file, not a run folder" % folder)
    if resume:
        if kind == "absent":
            raise MXGenError("checkpoint not found: %s" % folder)
        return RunLock(folder)
    if kind == "other":
        raise MXGenError("--out %s is a folder that holds other files, not an mxgen run; give"
                         " a new or empty folder%s"
                         % (folder, " (--overwrite replaces only an mxgen run)" if overwrite
                            else ""))
    if kind == "run":
        if not overwrite:
            raise MXGenError("%s; pass --resume to continue it or --overwrite to replace it"
                             " (the old run is moved aside, not deleted)"
                             % _holds_run(folder, step))
        old = RunLock(folder)                 # refused if that run is still going
        target = _aside(folder)
        try:
            os.rename(folder, target)
        except OSError as err:
            raise MXGenError("--overwrite: cannot move the run in %s aside to %s: %s"
                             % (folder, target, err.strerror)) from None
        finally:
            old.release()
        if log:
            log("--overwrite: moved the previous run (%s) to %s; nothing was deleted"
                % ("step %d" % step if step is not None else "no readable checkpoint", target))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise MXGenError("cannot create the run folder %s: %s" % (folder, err.strerror)) \
            from None
    lock = RunLock(folder)
    if describe(folder)[0] not in ("empty",):       # someone wrote in it meanwhile
        lock.release()
        raise MXGenError("%s is no longer empty (another process wrote to it); give another"
                         " --out" % folder)
    return lock
