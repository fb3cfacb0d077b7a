"""What every training loop shares.

:class:`Run` holds a run's life outside the step: the run folder (never
someone else's), resume (verify the checkpoint, merge its settings with the
command line), dry-run limits, the epoch and batch bookkeeping with a
progress bar, time and step budgets, checkpoints written and restored, the
metrics log, the train records, the end-of-epoch work (evaluate, record,
keep the best, checkpoint, plot) and the closing summary.

A family brings a :class:`Task`: it builds its data and networks, tells the
run what a checkpoint holds (:meth:`Run.track`), and keeps only its step and
its evaluation; :meth:`Run.train` runs the loop every family shares::

    with Run(cfg, FAMILY, explicit) as run:
        return run.train(MyTask(run))      # begin_epoch, step, evaluate...

Also here: seeds per step, the global gradient norm, clipping folded into the
update's normaliser, learning-rate schedules, and the image batches of the
image families.
"""
import dataclasses
import hashlib
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..distributed import KVSTORES, Cluster
from ..errors import MXGenError
from ..fields import AT_LEAST_0, AT_LEAST_1, POSITIVE, check_ranges, field
from ..models.registry import open_family_checkpoint
from ..utils import checkpoint as ckpt
from ..utils.context import check_batch_split, parse_ctx
from ..utils.metrics import MetricsLog, TensorBoard, plot_curves
from ..utils.runfolder import claim
from .schedule import cosine_lr

__all__ = ["Run", "RunConfig", "Task", "EpochSampler", "derive_seed", "global_grad_norm",
           "clip_batch_scale", "LRSchedule", "stop_reason", "merge_resumed", "image_folder",
           "image_batches"]

logger = logging.getLogger("mxgen")


@dataclass
class RunConfig:
    """The settings every training command has; a family's config adds its own
    (and may redeclare a field to change its default)."""
    out: str = field("runs/run", "run directory", group="run")
    ctx: str = field("cpu", "devices: cpu, cpu:0,1 (virtual CPU devices), gpu, gpu:0,1",
                     group="run")
    kvstore: Optional[str] = field(None, "how gradients are summed: local, device (the default"
                                         " over several --ctx devices), dist_sync,"
                                         " dist_device_sync or dist_async (one worker of"
                                         " `mxgen launch`),"
                                         " horovod (one process of `horovodrun`)",
                                   group="run", choices=KVSTORES)
    batch_size: int = field(32, "global batch size (split over --ctx devices)", group="run")
    epochs: int = field(10, "epochs (a resumed run keeps its own unless given)", group="run")
    seed: int = field(0, "random seed", group="run")
    log_interval: int = field(20, "steps between log lines", group="run")
    save_every: int = field(0, "also checkpoint every N steps (0 = at epoch ends only)",
                            group="run")
    max_minutes: Optional[float] = field(None, "stop (with a checkpoint) after this many"
                                               " minutes", group="run")
    max_steps: Optional[int] = field(None, "stop (with a checkpoint) after this many steps"
                                           " in this run", group="run")
    dry_run: bool = field(False, "two steps on a small slice; writes a real checkpoint",
                          group="run")
    resume: bool = field(False, "continue exactly from the latest checkpoint in --out",
                         group="run")
    overwrite: bool = field(False, "replace the run that --out holds (it is renamed to"
                                   " OUT.replaced-TIME, never deleted)", group="run")
    progress: bool = field(True, "progress bar", group="run")
    tensorboard: bool = field(False, "also write TensorBoard event files to OUT/tensorboard:"
                                     " scalars, sample grids, generated text (needs"
                                     " tensorboardX)", group="run")

    # Settings a resumed run may change; everything else comes from the checkpoint.
    CHANGEABLE_ON_RESUME: ClassVar[Tuple[str, ...]] = ("epochs", "max_minutes", "max_steps", "progress", "log_interval",
                            "out", "resume", "overwrite", "ctx", "save_every", "dry_run",
                            "kvstore", "tensorboard")
    # ... of which these belong to the run, not to one invocation: a resume
    # keeps the checkpoint's value unless the option is given again.
    KEPT_ON_RESUME: ClassVar[Tuple[str, ...]] = ("epochs", "save_every", "log_interval")
    # Settings a resume may change when given explicitly (e.g. the data moved).
    RESUME_OVERRIDABLE: ClassVar[Tuple[str, ...]] = ()
    # The values that checkpoints written before a setting existed trained
    # with, where they differ from today's default.
    OLDER_DEFAULTS: ClassVar[Dict[str, Any]] = {}

    def dry_run_limits(self):
        self.epochs, self.max_steps = 1, 2

    def validate(self):
        check_ranges(self, dict({k: AT_LEAST_1 for k in ("batch_size", "epochs", "log_interval",
                                                         "max_steps")},
                                max_minutes=POSITIVE, save_every=AT_LEAST_0))
        return self


def _chose_out(cfg, explicit):
    """Whether the user named the run folder (on the command line, or a
    library caller by a value other than the config's default)."""
    default = {f.name: f.default for f in dataclasses.fields(type(cfg))}["out"]
    return "out" in explicit or cfg.out != default


def derive_seed(seed, *keys):
    """A well-mixed 31-bit seed from a base seed and counters (e.g. the step)."""
    h = hashlib.blake2b(repr((seed,) + keys).encode(), digest_size=4).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


def sum_of_squares(arrays):
    """The sum of the squares of every value of ``arrays`` (an NDArray of
    shape (1,)), in float32.  Dense arrays go through BLAS dot products of
    their flat views: on CPU ``multi_sum_sq`` runs on one thread, four times
    slower for a char-LSTM's gradients (0.78 vs 0.20 ms with the host read,
    BENCHMARKS.md).  Other dtypes are cast to float32 first: CPU BLAS dot
    takes float32 only, and ``multi_sum_sq`` squares float16 in float16, so
    a float16 array with any value over 256 would read as an overflow.
    Sparse arrays go through ``multi_sum_sq``."""
    arrays = [a if a.dtype == np.float32 else a.astype(np.float32) for a in arrays]
    if all(a.stype == "default" for a in arrays):
        flat = [a.reshape((-1,)) for a in arrays]
        squares = [mx.nd.dot(f, f) for f in flat]
        return squares[0] if len(squares) == 1 else mx.nd.add_n(*squares)
    return mx.nd.sum(mx.nd.multi_sum_sq(*arrays, num_arrays=len(arrays)))


def global_grad_norm(params, ctx):
    """L2 norm over all gradients held on ``ctx`` (an NDArray of shape (1,))."""
    return mx.nd.sqrt(sum_of_squares([p.grad(ctx) for p in params if p.grad_req != "null"]))


def scaled_backward(losses, scaler):
    """``autograd.backward(losses)``, the gradients multiplied by the
    float16 loss scale where there is a ``scaler``; returns the scale."""
    if scaler is None:
        autograd.backward(losses)
        return 1.0
    autograd.backward(losses, [mx.nd.full(loss.shape, scaler.scale, ctx=loss.context)
                               for loss in losses])
    return scaler.scale


def scaled_step(trainer, params, ctx, batch_size, scaler, scale):
    """``trainer.step(batch_size)`` after :func:`scaled_backward`: with a
    ``scaler``, the summed gradient is checked (one host read), the update
    divides by the scale too, and an overflow skips it and halves the scale.
    Returns whether the update was applied."""
    if scaler is None:
        trainer.step(batch_size)
        return True
    trainer.allreduce_grads()
    finite = math.isfinite(float(global_grad_norm(params, ctx).asscalar()))
    if scaler.update(finite):
        trainer.update(batch_size * scale)
        return True
    return False


def clip_batch_scale(norm, normaliser, max_norm):
    """The ``batch_size`` to pass to ``trainer.update`` so that the update uses
    ``grad / normaliser`` clipped to global norm ``max_norm``.

    ``norm`` is the norm of the summed (un-normalised) gradient.
    """
    mean_norm = norm / normaliser
    if max_norm and mean_norm > max_norm:
        return normaliser * mean_norm / max_norm
    return normaliser


class LRSchedule:
    """Learning-rate schedules: ``constant``, ``cosine`` (over all steps), or
    ``plateau`` (multiply by ``decay`` when validation stops improving)."""

    KINDS = ("constant", "cosine", "plateau")

    def __init__(self, kind, base_lr, total_steps=None, decay=0.5, min_lr=1e-5, state=None):
        if kind not in self.KINDS:
            raise ValueError("unknown lr schedule %r; choose from %s" % (kind, ", ".join(self.KINDS)))
        self.kind, self.base_lr, self.total_steps = kind, base_lr, total_steps
        self.decay, self.min_lr = decay, min_lr
        self.plateau_lr, self.best = base_lr, None
        if state:
            self.plateau_lr, self.best = state["plateau_lr"], state.get("best")

    def state(self):
        return {"plateau_lr": self.plateau_lr, "best": self.best,
                "total_steps": self.total_steps}

    def lr_at(self, step):
        if self.kind == "cosine" and self.total_steps:
            return cosine_lr(step, self.base_lr, self.min_lr, self.total_steps)
        if self.kind == "plateau":
            return self.plateau_lr
        return self.base_lr

    def on_validation(self, value):
        """Call once per epoch with the validation loss."""
        if self.best is None or value < self.best:
            self.best = value
        elif self.kind == "plateau":
            self.plateau_lr = max(self.plateau_lr * self.decay, self.min_lr)


def stop_reason(cfg, started, steps_this_run):
    """Why a run should stop now (``max_steps`` or ``time budget``), else None."""
    if cfg.max_steps is not None and steps_this_run >= cfg.max_steps:
        return "max_steps"
    if cfg.max_minutes is not None and time.time() - started >= cfg.max_minutes * 60:
        return "time budget"
    return None


def merge_resumed(config_cls, saved, cfg, explicit, log=None):
    """The configuration of a resumed run.

    The checkpoint's settings win.  The settings of this invocation
    (``config_cls.CHANGEABLE_ON_RESUME``) come from the command line, except
    the run's own budget and cadence (``KEPT_ON_RESUME``: a 100-epoch run
    resumed without ``--epochs`` still has 100 epochs), which change only
    when given explicitly, as do ``RESUME_OVERRIDABLE`` ones; any other
    explicit setting that differs from the checkpoint's is an error naming
    it.  ``log`` gets one line per setting the user changed.
    """
    kept, changeable = config_cls.KEPT_ON_RESUME, config_cls.CHANGEABLE_ON_RESUME
    saved = dict(config_cls.OLDER_DEFAULTS, **saved)
    merged = dict(saved)
    for key in changeable:
        if key in kept and key in saved and key not in explicit:
            continue
        merged[key] = getattr(cfg, key)
    for key in explicit:
        value = getattr(cfg, key)
        if key in changeable and key not in kept:
            continue
        if key in kept or key in config_cls.RESUME_OVERRIDABLE:
            if key in saved and saved[key] != value and log:
                log("resuming with %s=%r (the run had %r)" % (key, value, saved[key]))
            merged[key] = value
        elif key in saved and saved[key] != value:
            raise MXGenError("cannot resume: the checkpoint was trained with %s=%r, but %r was"
                             " given; drop the option or start a new --out"
                             % (key, saved[key], value))
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in merged.items() if k in names})


class Task:
    """What a family's training brings to :meth:`Run.train`.

    A task builds its data, networks and trainers in its constructor, tells
    the run what a checkpoint holds (:meth:`Run.track`) and restores it
    (:meth:`Run.restore`).  Then, for the shared loop:

    * ``num_batches``: batches per epoch;
    * :meth:`begin_epoch`: set up the epoch's batches (from the saved
      position ``run.progress["batch"]``);
    * :meth:`step`: one update; returns ``(sums, count, extra)`` -- device
      sums of the logged values over this step's ``count`` samples
      (``metrics``, not read back), and the step's host-side numbers
      (``extra``, e.g. the gradient norm) -- or None when the step was
      skipped;
    * :meth:`evaluate`: the end-of-epoch (or end-of-run) evaluation;
      returns ``(record for metrics.jsonl or None, improved)``, where
      ``improved`` says the checkpoint is the best so far (see
      :meth:`Run.improves`);
    * ``plot``: ``plot_curves`` arguments for OUT/loss.png, or None;
    * :meth:`summary`: what :meth:`Run.finish` adds to the result.

    ``metrics`` names the logged values; ``unit`` what ``count`` counts
    (``tokens``, ``images``); ``always_best``: every checkpoint is the best
    (nothing is evaluated).
    """
    metrics: Tuple[str, ...] = ("loss",)
    unit = "samples"
    plot = None
    always_best = False

    def __init__(self, run):
        self.run = run

    def restore_scaler(self, scaler):
        """After :meth:`Run.restore`: a resumed float16 run continues with the
        loss scale it had (no-op for None or a fresh run)."""
        if scaler is not None and "loss_scaler" in self.run.progress:
            scaler.load(self.run.progress["loss_scaler"])

    def record_scaler(self, scaler):
        """After each step: the float16 loss scale goes with the next checkpoint."""
        if scaler is not None:
            self.run.progress["loss_scaler"] = scaler.state()

    def begin_epoch(self, epoch):
        pass

    def step(self):
        raise NotImplementedError

    def train_record(self, means, speed, extra):
        """``(fields of the train record, progress-bar postfix)``."""
        fields = dict(zip(self.metrics, (float(m) for m in means)))
        fields["%s_per_s" % self.unit] = speed
        fields.update(extra or {})
        return fields, {self.metrics[0]: "%.4f" % means[0], "%s_s" % self.unit[:3]:
                        "%.0f" % speed}

    def evaluate(self, epoch_done):
        return None, False

    def summary(self):
        return {}


class _Meter:
    """Device sums and counts between log lines: one host sync per line."""

    def __init__(self, run, task):
        self.run, self.task = run, task
        self.sums, self.count, self.extra = None, 0, None
        self.since, self.first = time.time(), run.step + 1

    def add(self, sums, count, extra=None):
        self.sums = sums if self.sums is None else self.sums + sums
        self.count += count
        self.extra = extra

    def write(self, epoch):
        run = self.run
        if not self.count:
            return
        means = self.sums.asnumpy() / self.count          # the one host sync per log line
        if not np.isfinite(means).all():
            raise MXGenError(
                "training stopped: non-finite %s loss in steps %d-%d (%s); try a lower --lr."
                " Last good checkpoint: %s" % (
                    run.family.title, self.first, run.step,
                    ", ".join("%s %s" % kv for kv in zip(self.task.metrics, means)),
                    run.last_ckpt or "none"))
        speed = self.count * run.cluster.num_workers / (time.time() - self.since)   # global
        fields, postfix = self.task.train_record(means, speed, self.extra)
        run.bar.set_postfix(**postfix)
        run.metrics.write(kind="train", step=run.step, epoch=epoch + 1, **fields)
        self.sums, self.count = None, 0
        self.since, self.first = time.time(), run.step + 1


class Run:
    """One training run of one model family (see the module docstring).

    ``cfg`` is the family's config dataclass (a :class:`RunConfig`);
    ``family`` its :class:`~mxgen.models.registry.Family`; ``explicit``
    names the settings the user gave (checked against a resumed run's);
    ``log`` takes each log line (default: the ``mxgen`` logger, at INFO).
    """

    def __init__(self, cfg, family, explicit=(), log=None):
        self.started, self.family, self.explicit = time.time(), family, tuple(explicit)
        self.ctxs = parse_ctx(cfg.ctx)
        self.cluster = Cluster(cfg.kvstore, self.ctxs)
        # one voice: the other ranks of a distributed run say nothing but errors
        self.log = (log or logger.info) if self.cluster.is_writer else (lambda *_: None)
        self.resume_from, self.lock = None, None
        # a dry run never writes into a run it resumes, nor into the default folder
        to_temp = cfg.dry_run and (cfg.resume or not _chose_out(cfg, explicit))
        if not cfg.resume:
            cfg.validate()                  # bad flags fail before anything is written
        if self.cluster.is_writer and not to_temp:
            self.lock = claim(cfg.out, cfg.resume, cfg.overwrite, self.log)
        try:
            self._open(cfg, explicit, to_temp)
        except BaseException:
            self.close()
            raise

    def _open(self, cfg, explicit, to_temp):
        if cfg.resume:
            self.resume_from, saved, _, _ = open_family_checkpoint(
                cfg.out, self.family.name, prefer="latest",
                required=("progress.json",) + self.family.resume_files)
            if "train" not in saved:
                raise MXGenError("cannot resume from %s: it holds no training settings"
                                 % self.resume_from)
            cfg = merge_resumed(type(cfg), saved["train"], cfg, explicit, self.log)
            cfg.validate()
        self.progress = {"epoch": 0, "batch": 0, "step": 0}
        if self.resume_from:
            self.progress = ckpt.read_json(self.resume_from, "progress.json")
        if cfg.dry_run:
            cfg.dry_run_limits()
            cfg.epochs = max(cfg.epochs, self.progress["epoch"] + 1)
        elif self.resume_from and self.progress["epoch"] >= cfg.epochs:
            raise MXGenError("nothing to train: the run in %s has finished %d of %d epochs;"
                             " pass --epochs N (N > %d) to train on"
                             % (cfg.out, self.progress["epoch"], cfg.epochs, cfg.epochs))
        self.cluster.shard(cfg.batch_size, "a batch")
        check_batch_split(cfg.batch_size // self.cluster.num_workers, self.ctxs)
        if self.cluster.distributed and cfg.max_minutes is not None:
            raise MXGenError("--max-minutes cannot stop every worker at the same step; use"
                             " --max-steps in a distributed run")
        cfg.progress = cfg.progress and self.cluster.is_writer
        if to_temp and self.cluster.is_writer:
            source, cfg.out = cfg.out, tempfile.mkdtemp(prefix="mxgen-dry-run-")
            self.lock = claim(cfg.out)
            self.log("dry run: writing to %s%s" % (
                cfg.out, " (the run in %s is only read)" % source if self.resume_from
                else " (--out chooses the folder)"))
        self.cfg = cfg
        # records logged after the checkpoint we resume from never happened
        self.tensorboard = TensorBoard(os.path.join(cfg.out, "tensorboard")) \
            if cfg.tensorboard and self.cluster.is_writer else None
        self.metrics = MetricsLog(os.path.join(cfg.out, "metrics.jsonl"),
                                  keep_until=self.step if self.resume_from else None,
                                  enabled=self.cluster.is_writer, tensorboard=self.tensorboard)
        self.last_ckpt, self.stop, self.steps_this_run = self.resume_from, None, 0
        self.last_batch = False
        self._nets, self._trainers, self._arrays, self._meta = {}, {}, dict, dict
        self._before_save = None

    def close(self):
        """Release the run folder (also when the loop failed)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def step(self):
        """Steps taken so far; inside a batch, this batch's step number (from 1)."""
        return self.progress["step"]

    @property
    def epoch(self):
        return self.progress["epoch"]

    # ---- what a checkpoint holds -------------------------------------------------
    def track(self, nets, trainers, arrays=None, meta=None, before_save=None):
        """Register what :meth:`save` writes and :meth:`restore` reads.

        ``nets`` ``{name: block}`` -> ``name.params``; ``trainers``
        ``{name: Trainer}`` -> ``name.states.nd`` + ``.json``; ``arrays`` a
        callable returning ``{name: {key: NDArray}}`` -> ``name.nd``; ``meta``
        a callable returning entries for ``config.json`` (``family`` and
        ``train`` are added) and ``{file: obj}`` under the key ``"files"``
        for other JSON files; ``before_save`` a callable run on the writing
        rank just before a checkpoint is written.
        """
        self._nets, self._trainers = dict(nets), dict(trainers)
        self._arrays, self._meta = arrays or dict, meta or dict
        self._before_save = before_save
        return self

    def restore(self):
        """On resume, load every tracked net and trainer; False on a fresh run."""
        if not self.resume_from:
            self.cluster.ready()
            return False
        for name, net in self._nets.items():
            ckpt.load_parameters(net, os.path.join(self.resume_from, name + ".params"),
                                 self.ctxs, "this %s" % name)
        restored = [ckpt.load_trainer(trainer, self.resume_from, name)
                    for name, trainer in self._trainers.items()]
        self.cluster.ready()                   # dist_async: the servers take these weights
        self.log("resuming from %s (epoch %d, batch %d, step %d)"
                 % (self.resume_from, self.epoch, self.progress["batch"], self.step))
        if not all(restored):
            self.log("the optimizer's state is not in the checkpoint (under dist_async it lives"
                     " on the servers); it restarts from zero, the schedule from step %d"
                     % self.step)
        return True

    def keep_kernels(self, names, older=None):
        """On resume, the kernel settings ``names`` the checkpoint was trained
        with (``config.json``'s ``kernels``; ``older`` ``{name: value}`` for
        checkpoints written before a setting existed), except those the user
        passed: set on ``cfg`` so the run continues with the same rounding
        and random streams.  Returns them (``{}`` on a fresh run)."""
        if not self.resume_from:
            return {}
        recorded = dict(older or {}, **self.read_json("config.json").get("kernels", {}))
        kept = {k: v for k, v in recorded.items() if k in names and k not in self.explicit}
        for key, value in kept.items():
            setattr(self.cfg, key, value)
        return kept

    def read_json(self, name):
        """A JSON file of the resumed checkpoint."""
        return ckpt.read_json(self.resume_from, name)

    def load_arrays(self, name):
        """``{key: NDArray}`` from the resumed checkpoint's ``name.nd``."""
        path = os.path.join(self.resume_from, name + ".nd")
        try:
            return mx.nd.load(path)
        except mx.base.MXNetError:
            raise MXGenError("checkpoint file %s is not an NDArray file" % path) from None

    def save(self, point_best=False):
        """Write a checkpoint of everything tracked; point ``latest`` (and
        ``best``) at it.  Non-finite parameters are refused.  Every rank of a
        distributed run calls it (``arrays`` may gather); rank 0 writes."""
        if self._before_save is not None and self.cluster.is_writer:
            self._before_save()
        for name, net in self._nets.items():
            if not ckpt.params_finite(net.collect_params().values()):
                raise MXGenError("refusing to save a checkpoint: the %s's parameters are not"
                                 " finite" % name)
        arrays = self._arrays()
        if not self.cluster.is_writer:
            return None
        meta = dict(self._meta())
        files = meta.pop("files", {})
        writer = ckpt.CheckpointWriter(self.cfg.out, self.step)
        with writer:
            for name, net in self._nets.items():
                ckpt.save_parameters(net, writer.path(name + ".params"))
            for name, trainer in self._trainers.items():
                ckpt.save_trainer(trainer, writer, name)
            for name, group in arrays.items():
                ckpt.save_arrays(writer.path(name + ".nd"), group)
            writer.write_json("config.json", dict(meta, family=self.family.name,
                                                  train=asdict(self.cfg)))
            writer.write_json("progress.json", self.progress)
            for name, obj in files.items():
                writer.write_json(name, obj)
        writer.point("latest")
        if point_best:
            writer.point("best")
        writer.prune()
        self.last_ckpt = writer.final_dir
        return self.last_ckpt

    # ---- the loop every family runs ------------------------------------------------
    def train(self, task):
        """Run ``task`` (a :class:`Task`) to the end of the run: its steps,
        a train record every ``log_interval`` steps (and at a stop or an
        epoch end), and after every epoch (or a stop) its evaluation, a
        checkpoint and the loss plot.  Returns :meth:`finish`'s summary."""
        for epoch in self.epochs():
            task.begin_epoch(epoch)
            meter = _Meter(self, task)
            for _ in self.batches(task.num_batches):
                result = task.step()
                if result is not None:
                    meter.add(*result)
                if self.log_due():
                    meter.write(epoch)
            self.end_epoch(task)
        return self.finish(**task.summary())

    def end_epoch(self, task):
        """Evaluate, record, checkpoint (pointing ``best`` when it improved)
        and plot: at every epoch end, and where a budget stops the run."""
        record, improved = task.evaluate(self.progress["batch"] == 0)
        if record is not None:
            self.metrics.write(**record)
        self.save(point_best=improved or task.always_best)
        if self.cluster.is_writer and task.plot:
            plot_curves(self.metrics.read(), os.path.join(self.cfg.out, "loss.png"),
                        **task.plot)

    def improves(self, key, score):
        """Whether ``score`` (lower is better) beats the run's best so far,
        kept under ``progress[key]``; a finite better score is recorded."""
        best = self.progress.get(key)
        better = score is not None and math.isfinite(score) and (best is None or score < best)
        if better:
            self.progress[key] = score
        return better

    # ---- epochs and batches -------------------------------------------------------
    def epochs(self):
        """Yield the epoch index (from 0) while the run has epochs left and no stop."""
        while self.epoch < self.cfg.epochs and self.stop is None:
            yield self.epoch

    def batches(self, total):
        """Yield batch indices of this epoch from the saved position.

        Before each yield the step counter advances (``run.step`` is this
        step's number), ``run.stop`` says whether a budget ends the run after
        this step and ``run.last_batch`` whether it ends the epoch, so a step
        can log its last numbers.  After the step: the position, the progress
        bar and ``save_every`` checkpoints.  A completed epoch advances
        ``run.epoch``.
        """
        from tqdm import tqdm
        cfg = self.cfg
        bar = tqdm(total=total, initial=self.progress["batch"], disable=not cfg.progress,
                   desc="epoch %d" % (self.epoch + 1), unit="batch", leave=False)
        self.bar = bar
        try:
            for i in range(self.progress["batch"], total):
                self.progress["step"] += 1
                self.steps_this_run += 1
                self.stop = stop_reason(cfg, self.started, self.steps_this_run)
                self.last_batch = i + 1 == total
                yield i
                self.progress["batch"] = i + 1
                bar.update(1)
                if self.stop:
                    break
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
        finally:
            bar.close()
        if self.progress["batch"] >= total:
            self.progress.update(epoch=self.epoch + 1, batch=0)

    def log_due(self):
        """Whether this step ends with a log line (interval, stop or epoch end)."""
        return self.step % self.cfg.log_interval == 0 or bool(self.stop) or self.last_batch

    def seed_step(self):
        """Seed MXNet's RNG for this step, so a resumed run draws what an
        uninterrupted one would."""
        mx.random.seed(derive_seed(self.cfg.seed, self.step - 1))

    def elapsed(self):
        return round(time.time() - self.started, 1)

    def finish(self, **summary):
        self.cluster.close()
        self.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.stop:
            self.log("stopped early (%s) at step %d; resume with --resume" % (self.stop, self.step))
        return dict(run_dir=self.cfg.out, checkpoint=self.last_ckpt, step=self.step,
                    epoch=self.epoch, stopped=self.stop, config=self.cfg,
                    writer=self.cluster.is_writer, **summary)


def image_folder(cfg, root, size, channels):
    """The image folder of an image family's run: decoded once (``cfg``'s
    ``decode_workers``, ``max_images``, ``seed``), at least one batch."""
    from ..data.images import ImageFolder
    images = ImageFolder(root, size, channels, num_workers=cfg.decode_workers,
                         limit=cfg.max_images, seed=cfg.seed)
    if len(images) < cfg.batch_size:
        raise MXGenError("%s has %d usable images, fewer than one batch (%d); lower"
                         " --batch-size" % (root, len(images), cfg.batch_size))
    return images


def image_batches(images, batch_size, seed, epoch, start_batch):
    """An iterator over one epoch's uint8 batches ``(N, C, S, S)`` of
    ``images`` (an ImageFolder or its array): a seeded permutation per
    epoch, from ``start_batch`` (exact resume)."""
    images = getattr(images, "images", images)
    sampler = EpochSampler(len(images), batch_size, seed, epoch, start_batch)
    return iter(mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(images),
                                         batch_size=batch_size, sampler=sampler,
                                         last_batch="discard"))


class EpochSampler(mx.gluon.data.Sampler):
    """A seeded permutation per epoch, started at batch ``start_batch`` (for
    exact resume); the last partial batch is dropped."""

    def __init__(self, length, batch_size, seed, epoch, start_batch):
        order = np.random.RandomState(seed + epoch).permutation(length)
        usable = (length // batch_size) * batch_size       # last partial batch dropped
        self.order = order[start_batch * batch_size:usable]

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self):
        return len(self.order)
