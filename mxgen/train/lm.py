"""The one training loop of character language models.

Streaming text (truncated BPTT, :class:`mxgen.train.text.StreamSource`) and
independent samples in length buckets (:class:`mxgen.train.samples.SampleSource`)
differ only in how batches, states and the loss mask are made; the model,
the step, the schedule, validation, checkpoints and logging are here, once.

The step (:class:`LMStep`), per batch::

    split_and_load -> detach states -> autograd.record over devices
    -> backward -> allreduce -> global-norm clip -> trainer.update

Losses are summed over tokens (over real tokens where a mask is given) on
each device and the update divides by the token count of the whole global
batch, so the gradient over several devices or workers equals the
single-device gradient of the same batch.  The one host sync per step is the
global gradient norm, which clipping and the non-finite guard both need.

Exact resume: parameters, trainer state, the data position, the schedule
and (streaming) the recurrent states are checkpointed, and MXNet's RNG
(dropout) is re-seeded from ``(seed, step)`` before every step, so a resumed
run draws exactly the dropout masks an uninterrupted run would.
"""
import math

import mxnet as mx
from mxnet import autograd, gluon

from ..distributed import Cluster, ServerTrainer
from ..errors import MXGenError
from ..generation import generate
from ..models import get_model
from ..nn.precision import LossScaler
from .common import (LRSchedule, Task, clip_batch_scale, global_grad_norm, scaled_backward,
                     sum_of_squares)

__all__ = ["LMLoss", "LMStep", "build_lm_step", "LMTask", "LN2", "LR_FLOOR"]

LN2 = math.log(2.0)
LR_FLOOR = 1e-5          # the lowest rate the cosine and plateau schedules reach
# the kernel settings a checkpoint records and a resume keeps unless given again
KERNEL_SETTINGS = ("rnn_impl", "dropout_impl", "dtype")


class LMLoss(gluon.HybridBlock):
    """A CharRNN plus its summed cross-entropy, hybridized as one graph.

    ``(data (T, N), target (T, N), *states) -> (loss sum (1,), new_states)``;
    with ``masked=True`` a float mask ``(T, N)`` follows the target.
    """

    def __init__(self, model, masked=False, **kwargs):
        super().__init__(**kwargs)
        self.masked = masked
        with self.name_scope():
            self.model = model

    def hybrid_forward(self, F, data, target, *rest):
        mask, states = (rest[0], rest[1:]) if self.masked else (None, rest)
        logits, new_states = self.model(data, *states)                      # (T, N, V)
        nll = -F.pick(F.log_softmax(logits, axis=-1), target, axis=-1)       # (T, N)
        if mask is not None:
            nll = nll * mask
        return F.sum(nll), new_states


def _split(arrays, ctxs):
    """TNC batches are split on the batch axis (1)."""
    return gluon.utils.split_and_load(arrays, ctxs, batch_axis=1, even_split=True)


class LMStep:
    """One update of a character model, for loops and benchmarks alike.

    ``step(data, target, states, mask=None, normaliser=None)``: this
    process's columns ``(T, N)`` of a global batch (ids, ids, and a float
    mask of real tokens or None; NumPy or NDArray), ``states`` one list per
    device (as ``begin_state`` gives), ``normaliser`` the tokens of the whole
    global batch the update divides by (default: ``T * N`` times the
    workers).  Returns ``(losses, new_states, norm)``: the summed loss on
    each device (NDArrays, not read), the carried states, and the global
    norm of the summed gradient (a float: the step's one host sync); a
    non-finite norm skips the update.  A float16 model's loss is scaled
    (``scaler``, a :class:`~mxgen.nn.precision.LossScaler`); a step whose
    scaled gradient overflowed returns the norm ``None``: skipped, the scale
    halved, nothing wrong with the model.

    ``graph(T, masked)`` is the hybridized loss graph of that sequence
    length (one for all lengths unless ``static_shape``, which plans one
    graph per length, as the length buckets of samples want).
    """

    def __init__(self, model, trainer, ctxs, clip, num_workers=1, hybridize=True,
                 static_shape=False):
        self.model, self.trainer, self.ctxs, self.clip = model, trainer, ctxs, clip
        self.num_workers, self.hybridize, self.static_shape = num_workers, hybridize, static_shape
        self.graphs = {}
        self.params = list(model.collect_params().values())
        self.scaler = LossScaler() if getattr(model, "dtype", None) == "float16" else None

    def graph(self, length, masked=False):
        key = (length if self.static_shape else None, masked)
        block = self.graphs.get(key)
        if block is None:
            block = LMLoss(self.model, masked=masked)
            if self.hybridize:
                block.hybridize(static_alloc=True, static_shape=self.static_shape)
            self.graphs[key] = block
        return block

    @property
    def loss_block(self):
        """The streaming (unmasked) graph."""
        return self.graph(None)

    def split(self, *arrays):
        return [_split(a, self.ctxs) for a in arrays]

    def __call__(self, data, target, states, mask=None, normaliser=None):
        block = self.graph(data.shape[0], mask is not None)
        parts = self.split(*((data, target) if mask is None else (data, target, mask)))
        states = [[s.detach() for s in dev] for dev in states]
        with autograd.record():
            results = [block(*args, *s) for args, s in zip(zip(*parts), states)]
        losses = [r[0] for r in results]
        loss_scale = scaled_backward(losses, self.scaler)
        tokens = data.shape[0] * data.shape[1]
        if normaliser is None:
            normaliser = tokens * self.num_workers
        if isinstance(self.trainer, ServerTrainer):
            return losses, [r[1] for r in results], self._push(tokens, loss_scale)
        self.trainer.allreduce_grads()
        norm = float(global_grad_norm(self.params, self.ctxs[0]).asscalar()) / loss_scale
        if self._apply(norm):
            self.trainer.update(clip_batch_scale(norm, float(normaliser), self.clip)
                                * loss_scale)
        return losses, [r[1] for r in results], self._reported(norm)

    def _apply(self, norm):
        """Whether to update with a gradient of this norm (and tell the scaler)."""
        finite = math.isfinite(norm)
        return self.scaler.update(finite) if self.scaler else finite

    def _reported(self, norm):
        overflow = self.scaler is not None and not math.isfinite(norm) \
            and self.scaler.scale > self.scaler.low
        return None if overflow else norm

    def _push(self, tokens, loss_scale):
        """dist_async: clip this worker's gradient (summed over its devices)
        by its own norm, then push it; the servers divide by ``tokens``."""
        grads = [p.list_grad() for p in self.params if p.grad_req != "null"]
        summed = [mx.nd.add_n(*[g.as_in_context(self.ctxs[0]) for g in dev]) if len(dev) > 1
                  else dev[0] for dev in grads]
        norm = float(mx.nd.sqrt(sum_of_squares(summed)).asscalar()) / loss_scale
        if self._apply(norm):
            scale = clip_batch_scale(norm, tokens, self.clip) / tokens * loss_scale
            if scale != 1:
                for dev in grads:
                    for g in dev:
                        g *= 1.0 / scale
            self.trainer.step(tokens * self.num_workers)
        return self._reported(norm)

    def evaluate(self, batches, states_for):
        """Mean masked (or plain) loss in nats per token over ``batches`` of
        ``(data, target, mask or None)``, outside training;
        ``states_for(per_device, carried)`` gives each batch's states (from
        the ``carried`` ones of the previous batch, or fresh)."""
        total, tokens, carried = [mx.nd.zeros((1,), ctx=c) for c in self.ctxs], 0.0, None
        with autograd.predict_mode():
            for data, target, mask in batches:
                block = self.graph(data.shape[0], mask is not None)
                parts = self.split(*((data, target) if mask is None else (data, target, mask)))
                states = states_for(data.shape[1] // len(self.ctxs), carried)
                carried = []
                for k, args in enumerate(zip(*parts)):
                    loss, new_states = block(*args, *states[k])
                    total[k] += loss
                    carried.append(new_states)
                tokens += data.size if mask is None else float(mask.sum())
        return float(sum(t.asscalar() for t in total)) / tokens


def build_lm_step(model_cfg, cfg, ctxs, cluster=None, measure=None, hybridize=True,
                  static_shape=False, optimizer_extra=None):
    """Model, kernels, loss graphs and trainer as ``train-text`` builds them:
    returns ``(model, step)``.  ``measure``: ``(sequence length, global
    batch)`` where ``'auto'`` times the kernels (default ``cfg``'s
    ``seq_len`` and ``batch_size``); ``optimizer_extra``: more optimizer
    options (the servers' ``lr_scheduler`` under dist_async)."""
    cluster = cluster or Cluster(None, ctxs)
    model = get_model("char_rnn", **model_cfg.to_dict())
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    length, batch = measure or (cfg.seq_len, cfg.batch_size)
    per_device = max(1, batch // cluster.num_workers // len(ctxs))
    model.set_rnn_impl(cfg.rnn_impl, ctxs, length, per_device)
    model.set_dropout_impl(cfg.dropout_impl, ctxs, length, per_device)
    model.set_dtype(getattr(cfg, "dtype", "float32"), ctxs, length, per_device,
                    impl_fixed=cfg.rnn_impl != "auto")
    trainer = cluster.trainer(model.collect_params(), cfg.optimizer,
                              dict({"learning_rate": cfg.lr, "wd": cfg.wd},
                                   **(optimizer_extra or {})),
                              batch_size=cfg.batch_size * cfg.seq_len, native_update=True)
    return model, LMStep(model, trainer, ctxs, cfg.clip, cluster.num_workers, hybridize,
                         static_shape)


class LMTask(Task):
    """The shared loop's hooks for a character model fed by ``source`` (a
    stream or bucketed samples; see the module docstring)."""
    metrics = ("loss",)
    unit = "tokens"

    def __init__(self, run, source):
        super().__init__(run)
        cfg, self.source = run.cfg, source
        self.vocab = source.vocab
        # a resume keeps the kernels trained with (rounding, dropout stream); checkpoints
        # from before --dtype were float32
        kept = run.keep_kernels(KERNEL_SETTINGS, {"dtype": "float32"})
        mx.random.seed(cfg.seed)
        self.total_steps = cfg.epochs * source.num_batches
        try:
            self.model, self.step_fn = build_lm_step(
                cfg.model_config(len(self.vocab)), cfg, run.ctxs, run.cluster,
                measure=source.measure, static_shape=source.static_shape,
                optimizer_extra=source.server_schedule(self.total_steps))
        except MXGenError as err:
            if not kept:
                raise
            raise MXGenError("%s; the checkpoint was trained with %s: pass --rnn-impl /"
                             " --dropout-impl / --dtype to resume with other kernels (float"
                             " rounding and the dropout stream then change)"
                             % (err, ", ".join("%s=%s" % kv for kv in sorted(kept.items()))))\
                from None
        for key in kept:
            setattr(self.model, key + "_reason", "the checkpoint's kernel, kept so the run"
                                                 " continues exactly")
        self.num_batches = source.num_batches
        self.schedule = LRSchedule(cfg.lr_schedule, cfg.lr, total_steps=self.total_steps,
                                   decay=cfg.lr_decay, min_lr=LR_FLOOR,
                                   state=run.progress.get("schedule"))
        run.progress.setdefault("best_val_bpc", None)
        run.progress.setdefault("bad_steps", 0)
        model = self.model
        run.track(nets={"model": model}, trainers={"trainer": self.step_fn.trainer},
                  arrays=source.arrays,
                  meta=lambda: dict(source.meta(), model=model.config.to_dict(),
                                    kernels={"rnn_impl": model.rnn_impl,
                                             "dropout_impl": model.dropout_impl,
                                             "dtype": model.dtype},
                                    files={"vocab.json": self.vocab.to_dict()}))
        source.bind(self.model, run)
        if run.restore():
            source.restore(run)
            self.restore_scaler(self.step_fn.scaler)
            old_total = (run.progress.get("schedule") or {}).get("total_steps")
            if cfg.lr_schedule == "cosine" and old_total and old_total != self.total_steps:
                run.log("the cosine schedule now decays over %d steps instead of %d: rates"
                        " from step %d on differ from the original run's"
                        % (self.total_steps, old_total, run.step + 1))
        source.log_setup(run)
        run.log("model %s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden, cfg.ctx))
        run.log("recurrent kernel: %s (%s)" % ("mxgen native %s op" % cfg.mode.upper()
                                               if model.rnn_impl == "native"
                                               else "MXNet fused RNN op", model.rnn_impl_reason))
        run.log("dropout kernel: %s (%s)" % ("mxgen native op" if model.dropout_impl == "native"
                                             else "MXNet op", model.dropout_impl_reason))
        run.log("precision: %s (%s)" % (model.dtype, model.dtype_reason))
        self.lr = self.schedule.lr_at(max(run.step - 1, 0))   # the rate of the last step taken
        self.plot = dict(series={"train_bpc": "train", "val_bpc": "val"},
                         ylabel="bits per character", title=source.title)
        self.always_best = not source.has_validation

    def begin_epoch(self, epoch):
        self.source.begin_epoch(epoch, self.run.progress["batch"])

    def step(self):
        run, cfg = self.run, self.run.cfg
        data, target, mask, normaliser, states = self.source.next_batch()
        self.lr = self.schedule.lr_at(run.step - 1)
        if not run.cluster.on_servers:                 # dist_async: the servers' scheduler
            self.step_fn.trainer.set_learning_rate(self.lr)
        if cfg.dropout > 0:
            run.seed_step()
        losses, states, norm = self.step_fn(data, target, states, mask, normaliser)
        self.record_scaler(self.step_fn.scaler)
        if norm is None:                     # float16 overflow: update skipped, scale halved
            self.source.carry(states)
            return None
        if not self._finite(norm):
            self.source.carry(None)
            return None
        self.source.carry(states)
        total = mx.nd.add_n(*[loss.as_in_context(run.ctxs[0]) for loss in losses])
        return total, data.size if mask is None else float(mask.sum()), \
            {"grad_norm": norm, "lr": self.lr}

    def _finite(self, norm):
        """Whether this step's gradient norm is finite.  If not: count it,
        log it and, after ``max_bad_steps`` in a row, stop with an error
        naming the last good checkpoint (the update was skipped)."""
        run, progress = self.run, self.run.progress
        if math.isfinite(norm):
            progress["bad_steps"] = 0
            return True
        progress["bad_steps"] = progress.get("bad_steps", 0) + 1
        run.log("step %d: non-finite loss/gradient (%s); update skipped (%d in a row)"
                % (run.step, norm, progress["bad_steps"]))
        run.metrics.write(kind="bad_step", step=run.step, epoch=run.epoch + 1)
        if progress["bad_steps"] >= run.cfg.max_bad_steps:
            raise MXGenError("training stopped: %d steps in a row had a non-finite loss or"
                             " gradient (last at step %d); try a lower --lr. Last good"
                             " checkpoint: %s" % (progress["bad_steps"], run.step,
                                                  run.last_ckpt or "none"))
        return False

    def train_record(self, means, speed, extra):
        loss = float(means[0])
        return (dict(loss=loss, train_bpc=loss / LN2, tokens_per_s=speed, **extra),
                {"bpc": "%.3f" % (loss / LN2), "tok_s": "%.0f" % speed})

    def evaluate(self, epoch_done):
        run, source = self.run, self.source
        source.end_epoch(epoch_done)
        record = {"kind": "val", "step": run.step, "epoch": run.epoch,
                  "elapsed_s": run.elapsed()}
        improved = False
        if source.has_validation:
            val_loss = source.evaluate(self.step_fn)
            val_bpc = val_loss / LN2
            val_ppl = math.exp(val_loss) if val_loss < 700 else float("inf")
            improved = run.improves("best_val_bpc", val_bpc)
            if epoch_done:                     # only epoch ends drive the schedule
                self.schedule.on_validation(val_bpc)
            record.update(val_loss=val_loss, val_bpc=val_bpc, val_ppl=val_ppl, lr=self.lr)
            where = ("epoch %d" % run.epoch if epoch_done else "epoch %d (batch %d of %d)"
                     % (run.epoch + 1, run.progress["batch"], self.num_batches))
            run.log("%s step %d: %s %.4f bits/char (perplexity %.3f)%s"
                    % (where, run.step, source.eval_label, val_bpc, val_ppl,
                       " *best*" if improved else ""))
        run.progress["schedule"] = self.schedule.state()
        if run.tensorboard is not None:
            run.tensorboard.text("samples", "\n\n".join(source.samples(self.model)), run.step)
        return record, improved

    def summary(self):
        return dict(self.source.summary(), best_val_bpc=self.run.progress["best_val_bpc"],
                    vocab=self.vocab, model=self.model, graphs=len(self.step_fn.graphs))


def text_samples(model, vocab, seed, num=1, length=200, stop_at_eos=False):
    """Samples for TensorBoard (through generation's own graphs; the model's
    training graphs are untouched)."""
    from ..generation import default_prompt
    return generate(model, vocab, default_prompt(vocab, stop_at_eos), length, temperature=0.8,
                    num_samples=num, seed=seed, native=False, stop_at_eos=stop_at_eos)
