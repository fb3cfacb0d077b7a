"""Training character-level language models with truncated BPTT.

The step (:class:`TextStep`), per batch::

    split_and_load -> detach states -> autograd.record over devices
    -> backward -> allreduce -> global-norm clip -> trainer.update

Losses are summed over tokens on each device and the update divides by the
total token count, so the gradient over several devices equals the
single-device gradient of the same batch.  The one host sync per step is the
global gradient norm, which clipping and the non-finite guard both need.

Exact resume: parameters, trainer state, the recurrent states, the data
position and the schedule are checkpointed, and MXNet's RNG (dropout) is
re-seeded from ``(seed, step)`` before every step, so a resumed run draws
exactly the dropout masks an uninterrupted run would.
"""
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
from mxnet import autograd, gluon

from ..config import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges, field
from ..data.batchify import BPTTBatches
from ..data.corpus import STDLIB, load_text, split_train_val
from ..data.vocab import Vocab
from ..errors import MXGenError
from ..models import get_model
from ..models.char_rnn import FAMILY, CharRNNConfig
from ..utils.metrics import plot_curves
from ..distributed import Cluster, ServerTrainer
from .common import LRSchedule, Run, RunConfig, clip_batch_scale, global_grad_norm
from .schedule import ServerCosine

__all__ = ["TextTrainConfig", "LMLoss", "TextStep", "train_text", "evaluate"]

LN2 = math.log(2.0)
LR_FLOOR = 1e-5          # the lowest rate the cosine and plateau schedules reach


@dataclass
class TextTrainConfig(RunConfig):
    """Everything ``mxgen train-text`` can set (saved in each checkpoint).

    Each field's ``help`` (and ``choices``) become its command-line flag.
    """
    data: str = field(STDLIB, "corpus: a file, a directory, a glob, or 'stdlib' (this"
                              " Python's standard-library sources; no download)")
    out: str = field("runs/text", "run directory", group="run")
    epochs: int = field(20, "epochs (a resumed run keeps its own unless given)", group="run")
    mode: str = field("lstm", "recurrent cell", group="model",
                      choices=("rnn_relu", "rnn_tanh", "gru", "lstm"))
    num_embed: int = field(64, "embedding size", group="model")
    num_hidden: int = field(256, "hidden units per layer", group="model")
    num_layers: int = field(2, "recurrent layers", group="model")
    dropout: float = field(0.2, "dropout on embeddings, between layers and on the output",
                           group="model")
    tie_weights: bool = field(False, "share embedding and decoder weights (needs"
                                     " num_embed == num_hidden)", group="model")
    seq_len: int = field(100, "BPTT steps per batch")
    optimizer: str = field("adam", "any MXNet optimizer")
    lr: float = field(2e-3, "learning rate")
    wd: float = field(0.0, "weight decay")
    lr_schedule: str = field("plateau", "plateau multiplies the rate by --lr-decay when"
                                        " validation stalls; cosine decays over all steps",
                             choices=LRSchedule.KINDS)
    lr_decay: float = field(0.5, "factor of the plateau schedule")
    clip: float = field(5.0, "global gradient-norm clip per token (0 = off)")
    val_fraction: float = field(0.1, "held-out tail of the corpus")
    max_chars: Optional[int] = field(None, "use only the first N characters")
    min_char_count: Optional[int] = field(None, "characters rarer than this map to an"
                                                " unknown token (default: 20 for stdlib,"
                                                " else 1)")
    rnn_impl: str = field("auto", "recurrent kernel: MXNet's fused RNN op or mxgen's native"
                                  " LSTM/GRU op (auto = native where it measures faster"
                                  " here; the log says which and why)",
                          choices=("auto", "fused", "native"))
    dropout_impl: str = field("auto", "dropout kernel: MXNet's Dropout or mxgen's native op"
                                      " (same distribution; auto = native where it measures"
                                      " faster)", choices=("auto", "mxnet", "native"))
    max_bad_steps: int = field(5, "stop after this many non-finite steps in a row",
                               group="run")
    samples: Optional[str] = field(None, "train on independent samples instead of one stream:"
                                         " one per line, per paragraph (text between blank"
                                         " lines) or per file; each ends with an end mark that"
                                         " generation learns to stop at; batches come from"
                                         " length buckets and hold about --batch-size x"
                                         " --seq-len positions each",
                                   choices=("lines", "paragraphs", "files"))
    buckets: int = field(12, "length buckets of --samples (the lengths that pad least)")
    max_len: int = field(256, "--samples longer than this (characters + end mark) are left"
                              " out; the log counts them")

    RUN_LENGTH = RunConfig.RUN_LENGTH + ("rnn_impl", "dropout_impl", "max_bad_steps")
    # ... and these, when given explicitly (e.g. the corpus moved).
    RESUME_OVERRIDABLE = ("data", "max_chars")

    def dry_run_limits(self):
        super().dry_run_limits()
        self.max_chars = min(self.max_chars or 20000, 20000)

    def validate(self):
        super().validate()
        check_ranges(self, dict(
            {k: AT_LEAST_1 for k in ("num_embed", "num_hidden", "num_layers", "seq_len",
                                     "max_bad_steps", "max_chars", "min_char_count",
                                     "buckets")},
            max_len=(lambda v: v >= 2, ">= 2"),
            lr=AT_LEAST_0, wd=AT_LEAST_0, clip=AT_LEAST_0, dropout=FRACTION,
            val_fraction=FRACTION, lr_decay=(lambda v: 0 < v <= 1, "in (0, 1]")))
        return self

    def model_config(self, vocab_size):
        return CharRNNConfig(vocab_size, self.num_embed, self.num_hidden, self.num_layers,
                             self.dropout, self.mode, self.tie_weights).validate()


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


def build_vocab(text, min_count, eos=None):
    """The characters of ``text``; with ``min_count`` > 1 the rarer ones map
    to an unknown token.  ``eos``: an end-of-sample mark to include."""
    if not min_count or min_count <= 1:
        return Vocab.from_text(text, eos=eos)
    counts = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return Vocab([c for c, n in counts.items() if n >= min_count], eos=eos, unk=Vocab.UNK)


def _split(arrays, ctxs):
    """TNC batches are split on the batch axis (1)."""
    return gluon.utils.split_and_load(arrays, ctxs, batch_axis=1, even_split=True)


def evaluate(loss_block, batches, ctxs):
    """Mean loss (nats per character) over all batches, states carried."""
    states = [loss_block.model.begin_state(batches.batch_size // len(ctxs), ctx=c) for c in ctxs]
    total = [mx.nd.zeros((1,), ctx=c) for c in ctxs]
    for data, target in batches:
        datas, targets = _split(data, ctxs), _split(target, ctxs)
        for k, (d, t) in enumerate(zip(datas, targets)):
            loss, states[k] = loss_block(d, t, *states[k])
            total[k] += loss
    return float(sum(t.asscalar() for t in total)) / batches.num_tokens


class TextStep:
    """The training step of :func:`train_text`, for benchmarks and loops alike.

    ``step(data, target, states)``: ``data``/``target`` ``(T, N)`` ids (NumPy
    or NDArray), ``states`` one list per device (as ``begin_state`` gives);
    returns ``(losses, new_states, norm)``: the summed loss on each device
    (NDArrays, not read), the carried states, and the global norm of the
    summed gradient (a float: the step's one host sync).  The update divides
    by the global batch's token count (this process's share times
    ``num_workers``) and clips to ``clip`` per token; a non-finite norm skips
    the update.
    """

    def __init__(self, loss_block, trainer, ctxs, clip, num_workers=1):
        self.loss_block, self.trainer, self.ctxs, self.clip = loss_block, trainer, ctxs, clip
        self.num_workers = num_workers
        self.params = list(loss_block.model.collect_params().values())

    def __call__(self, data, target, states):
        datas, targets = _split(data, self.ctxs), _split(target, self.ctxs)
        states = [[s.detach() for s in dev] for dev in states]
        with autograd.record():
            results = [self.loss_block(d, t, *s) for d, t, s in zip(datas, targets, states)]
        losses = [r[0] for r in results]
        autograd.backward(losses)
        tokens = data.shape[0] * data.shape[1]
        if isinstance(self.trainer, ServerTrainer):
            return losses, [r[1] for r in results], self._push(tokens)
        self.trainer.allreduce_grads()
        norm = float(global_grad_norm(self.params, self.ctxs[0]).asscalar())
        if math.isfinite(norm):
            self.trainer.update(clip_batch_scale(norm, tokens * self.num_workers, self.clip))
        return losses, [r[1] for r in results], norm

    def _push(self, tokens):
        """dist_async: clip this worker's gradient (summed over its devices)
        by its own norm, then push it; the servers divide by ``tokens``."""
        grads = [p.list_grad() for p in self.params if p.grad_req != "null"]
        summed = [mx.nd.add_n(*[g.as_in_context(self.ctxs[0]) for g in dev]) if len(dev) > 1
                  else dev[0] for dev in grads]
        norm = float(mx.nd.sqrt(mx.nd.sum(mx.nd.multi_sum_sq(
            *summed, num_arrays=len(summed)))).asscalar())
        if math.isfinite(norm):
            scale = clip_batch_scale(norm, tokens, self.clip) / tokens
            if scale != 1:
                for dev in grads:
                    for g in dev:
                        g *= 1.0 / scale
            self.trainer.step(tokens * self.num_workers)
        return norm


def build_text_step(model_cfg, cfg, ctxs, hybridize=True, cluster=None, optimizer_extra=None):
    """Model, kernels, loss graph and trainer as ``train_text`` builds them:
    returns ``(model, step)``.  ``optimizer_extra``: more optimizer options
    (the servers' ``lr_scheduler`` under dist_async)."""
    cluster = cluster or Cluster(None, ctxs)
    model = get_model("char_rnn", **model_cfg.to_dict())
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    per_device = cfg.batch_size // cluster.num_workers // len(ctxs)
    model.set_rnn_impl(cfg.rnn_impl, ctxs, cfg.seq_len, per_device)
    model.set_dropout_impl(cfg.dropout_impl, ctxs, cfg.seq_len, per_device)
    loss_block = LMLoss(model)
    if hybridize:
        loss_block.hybridize(static_alloc=True)
    trainer = cluster.trainer(model.collect_params(), cfg.optimizer,
                              dict({"learning_rate": cfg.lr, "wd": cfg.wd},
                                   **(optimizer_extra or {})),
                              batch_size=cfg.batch_size * cfg.seq_len)
    return model, TextStep(loss_block, trainer, ctxs, cfg.clip, cluster.num_workers)


def _corpus(cfg, run, ctxs):
    """Text, vocabulary (the checkpoint's on resume) and batches."""
    text = load_text(cfg.data, max_chars=cfg.max_chars)
    train_str, val_str = split_train_val(text, cfg.val_fraction)
    if run.resume_from:
        vocab = Vocab.from_dict(run.read_json("vocab.json"))
        missing = vocab.missing(text)
        if missing and vocab.unk is None:
            raise MXGenError("corpus %s has characters the checkpoint's vocabulary lacks: %s"
                             % (cfg.data, ", ".join(repr(c) for c in missing[:20])))
    else:
        min_count = cfg.min_char_count if cfg.min_char_count is not None else (
            20 if cfg.data == STDLIB else 1)
        vocab = build_vocab(text, min_count)
    train_data = BPTTBatches(vocab.encode(train_str), cfg.batch_size, cfg.seq_len,
                             name="training text (%s)" % cfg.data)
    val_data = None
    if val_str:
        val_batch = min(cfg.batch_size, len(val_str) // (cfg.seq_len + 1))
        val_batch -= val_batch % len(ctxs)
        if val_batch < 1:
            raise MXGenError("validation split of %d characters is too short for seq_len %d;"
                             " lower --seq-len or raise --val-fraction" % (len(val_str), cfg.seq_len))
        val_data = BPTTBatches(vocab.encode(val_str), val_batch, cfg.seq_len,
                               name="validation text")
    return vocab, train_data, val_data, (len(train_str), len(val_str))


class TokenMeter:
    """Summed losses and token counts between log lines, for the train
    records of the text loops (one host sync per line)."""

    def __init__(self, run):
        self.run, self.ctx = run, run.ctxs[0]
        self.loss, self.tokens, self.since = mx.nd.zeros((1,), ctx=self.ctx), 0.0, time.time()

    def add(self, losses, tokens):
        for loss in losses:
            self.loss += loss.as_in_context(self.ctx)
        self.tokens += tokens

    def write(self, epoch, norm, lr):
        run = self.run
        train_loss = float(self.loss.asscalar()) / self.tokens
        speed = self.tokens * run.cluster.num_workers / (time.time() - self.since)  # global
        run.bar.set_postfix(bpc="%.3f" % (train_loss / LN2), tok_s="%.0f" % speed)
        run.metrics.write(kind="train", step=run.step, epoch=epoch + 1, loss=train_loss,
                          train_bpc=train_loss / LN2, grad_norm=norm, tokens_per_s=speed, lr=lr)
        self.loss[:], self.tokens, self.since = 0, 0.0, time.time()


def _sample_text(model, vocab, seed, length=200):
    """A short sample for TensorBoard (the model's own graphs are untouched:
    generation builds its own)."""
    from ..generation import generate
    prompt = "\n" if "\n" in vocab.index else vocab.chars[0]
    return generate(model, vocab, prompt, length, temperature=0.8, seed=seed,
                    native=False)[0]


def _global_states(states, cluster):
    """Per-device state lists -> ``{"s<j>": (1, B, H)}`` over the global batch
    (gathered from every rank: a collective in a distributed run)."""
    return {"s%d" % j: cluster.gather(j, mx.nd.concat(*[dev[j].as_in_context(mx.cpu())
                                                          for dev in states], dim=1), axis=1)
            for j in range(len(states[0]))}


def _local_states(run, model, columns):
    """The resumed run's states for this rank's ``columns``, split over its devices."""
    saved = run.load_arrays("states")
    per = model.states_per_layer * model.num_layers
    if sorted(saved) != sorted("s%d" % j for j in range(per)):
        raise MXGenError("checkpoint %s holds recurrent states %s; this model needs %d"
                         % (run.resume_from, ", ".join(sorted(saved)), per))
    split = [gluon.utils.split_and_load(saved["s%d" % j][:, columns[0]:columns[1]], run.ctxs,
                                        batch_axis=1) for j in range(per)]
    return [[split[j][k] for j in range(per)] for k in range(len(run.ctxs))]


def _server_schedule(cfg, run, total_steps):
    """dist_async: the learning-rate schedule as the servers' optimizer runs
    it, counted in server updates (one per worker step)."""
    if not run.cluster.on_servers:
        return None
    if cfg.lr_schedule == "plateau":
        raise MXGenError("--lr-schedule plateau changes the rate after validation, but under"
                         " dist_async the optimizer runs on the servers and cannot be changed;"
                         " pass --lr-schedule cosine or constant")
    if cfg.lr_schedule == "constant":
        return None
    return {"lr_scheduler": ServerCosine(cfg.lr, LR_FLOOR, total_steps, run.cluster.num_workers,
                                         first_step=run.step)}


def _build_resumable(cfg, run, explicit, vocab_size, optimizer_extra=None):
    """:func:`build_text_step`; a resumed run keeps the kernels it trained with
    (others change float rounding and the dropout stream) unless named."""
    kept = {}
    if run.resume_from:
        kept = {k: v for k, v in run.read_json("config.json").get("kernels", {}).items()
                if k in ("rnn_impl", "dropout_impl") and k not in explicit}
        for key, value in kept.items():
            setattr(cfg, key, value)
    try:
        model, step_fn = build_text_step(cfg.model_config(vocab_size), cfg, run.ctxs,
                                         cluster=run.cluster, optimizer_extra=optimizer_extra)
    except MXGenError as err:
        if not kept:
            raise
        raise MXGenError("%s; the checkpoint was trained with rnn_impl=%s, dropout_impl=%s:"
                         " pass --rnn-impl / --dropout-impl to resume with other kernels"
                         " (float rounding and the dropout stream then change)"
                         % (err, cfg.rnn_impl, cfg.dropout_impl)) from None
    for key in kept:
        setattr(model, key + "_reason", "the checkpoint's kernel, kept so the run continues"
                                        " exactly")
    return model, step_fn


def train_text(cfg, log=print, explicit=()):
    """Train (or resume) a character-level model; returns a summary dict.

    ``explicit`` names the settings the user gave; on ``resume`` they are
    checked against the checkpoint's (see :func:`~mxgen.train.common.merge_resumed`).
    """
    with Run(cfg, FAMILY, explicit, log, required=("vocab.json", "model.params")) as run:
        if run.cfg.samples:
            from .samples import train_samples
            return train_samples(run, run.cfg.model_config)
        return _train_stream(run, explicit)


def _train_stream(run, explicit):
    cfg, ctxs, progress = run.cfg, run.ctxs, run.progress
    if run.resume_from and not os.path.isfile(os.path.join(run.resume_from, "states.nd")):
        raise MXGenError("checkpoint %s is missing states.nd" % run.resume_from)
    vocab, train_data, val_data, sizes = _corpus(cfg, run, ctxs)
    mx.random.seed(cfg.seed)
    total_steps = cfg.epochs * len(train_data)
    model, step_fn = _build_resumable(cfg, run, explicit, len(vocab),
                                      _server_schedule(cfg, run, total_steps))
    lo, hi = run.cluster.shard(cfg.batch_size)         # this rank's columns of each batch
    per_device = (hi - lo) // len(ctxs)
    schedule = LRSchedule(cfg.lr_schedule, cfg.lr, total_steps=total_steps, decay=cfg.lr_decay,
                          min_lr=LR_FLOOR, state=progress.get("schedule"))
    progress.setdefault("best_val_bpc", None)
    progress.setdefault("bad_steps", 0)
    states = None
    run.track(nets={"model": model}, trainers={"trainer": step_fn.trainer},
              arrays=lambda: {"states": _global_states(states, run.cluster)},
              meta=lambda: {"model": model.config.to_dict(),
                            "kernels": {"rnn_impl": model.rnn_impl,
                                        "dropout_impl": model.dropout_impl},
                            "files": {"vocab.json": vocab.to_dict()}})
    if run.restore():
        states = _local_states(run, model, (lo, hi))
        old_total = (progress.get("schedule") or {}).get("total_steps")
        if cfg.lr_schedule == "cosine" and old_total and old_total != total_steps:
            run.log("the cosine schedule now decays over %d steps instead of %d: rates from"
                    " step %d on differ from the original run's"
                    % (total_steps, old_total, run.step + 1))
    run.log("corpus %s: %d train / %d validation chars, vocab %d; %d batches of (%d, %d) per epoch"
        % ((cfg.data,) + sizes + (len(vocab), len(train_data), cfg.seq_len, cfg.batch_size)))
    run.log("model %s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden, cfg.ctx))
    run.log("recurrent kernel: %s (%s)" % ("mxgen native %s op" % cfg.mode.upper()
                                       if model.rnn_impl == "native" else "MXNet fused RNN op",
                                       model.rnn_impl_reason))
    run.log("dropout kernel: %s (%s)" % ("mxgen native op" if model.dropout_impl == "native"
                                     else "MXNet op", model.dropout_impl_reason))

    lr = schedule.lr_at(max(run.step - 1, 0))          # the rate of the last step taken
    for epoch in run.epochs():
        if states is None or progress["batch"] == 0:
            states = [model.begin_state(per_device, ctx=c) for c in ctxs]
        meter = TokenMeter(run)
        for i in run.batches(len(train_data)):
            data, target = (a[:, lo:hi] for a in train_data[i])
            lr = schedule.lr_at(run.step - 1)
            if not run.cluster.on_servers:             # dist_async: the servers' scheduler
                step_fn.trainer.set_learning_rate(lr)
            if cfg.dropout > 0:
                run.seed_step()
            losses, states, norm = step_fn(data, target, states)
            if not run.step_finite(norm, epoch):
                states = [model.begin_state(per_device, ctx=c) for c in ctxs]
                continue
            meter.add(losses, data.size)
            if run.step % cfg.log_interval == 0:
                meter.write(epoch, norm, lr)
        epoch_done = progress["batch"] == 0
        if epoch_done:
            states = None
        # ---- end of epoch (or of this run): validate and checkpoint -----------
        record = {"kind": "val", "step": run.step, "epoch": run.epoch, "elapsed_s": run.elapsed()}
        improved = False
        if val_data is not None:
            with autograd.predict_mode():
                val_loss = evaluate(step_fn.loss_block, val_data, ctxs)
            val_bpc = val_loss / LN2
            val_ppl = math.exp(val_loss) if val_loss < 700 else float("inf")
            best = progress["best_val_bpc"]
            improved = math.isfinite(val_bpc) and (best is None or val_bpc < best)
            if improved:
                progress["best_val_bpc"] = val_bpc
            if epoch_done:                     # only epoch ends drive the schedule
                schedule.on_validation(val_bpc)
            record.update(val_loss=val_loss, val_bpc=val_bpc, val_ppl=val_ppl,
                          lr=lr)
            where = ("epoch %d" % run.epoch if epoch_done else "epoch %d (batch %d of %d)"
                     % (run.epoch + 1, progress["batch"], len(train_data)))
            run.log("%s step %d: validation %.4f bits/char (perplexity %.3f)%s"
                % (where, run.step, val_bpc, val_ppl, " *best*" if improved else ""))
        progress["schedule"] = schedule.state()
        if states is None:
            states = [model.begin_state(per_device, ctx=c) for c in ctxs]
        run.metrics.write(**record)
        if run.tensorboard is not None:
            run.tensorboard.text("sample", _sample_text(model, vocab, cfg.seed), run.step)
        run.save(point_best=improved or val_data is None)
        if run.cluster.is_writer:
            plot_curves(run.metrics.read(), os.path.join(cfg.out, "loss.png"),
                        {"train_bpc": "train", "val_bpc": "val"}, ylabel="bits per character",
                        title="%s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden,
                                                  os.path.basename(cfg.data.rstrip("/"))))
    return run.finish(best_val_bpc=progress["best_val_bpc"], vocab=vocab, model=model)
