"""Training character-level language models with truncated BPTT.

The loop, per batch::

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
from dataclasses import asdict, dataclass
from typing import Optional

import mxnet as mx
from mxnet import autograd, gluon

from ..data.batchify import BPTTBatches
from ..data.corpus import STDLIB, load_text, split_train_val
from ..data.vocab import Vocab
from ..errors import MXGenError
from ..models.char_rnn import CharRNN, CharRNNConfig
from ..utils import checkpoint as ckpt
from ..utils.context import check_batch_split, parse_ctx
from ..utils.metrics import MetricsLog, plot_curves
from .common import (LRSchedule, clip_batch_scale, derive_seed, global_grad_norm,
                     load_parameters, merge_resumed, params_finite, save_parameters, stop_reason)

__all__ = ["TextTrainConfig", "LMLoss", "train_text", "load_char_rnn", "evaluate"]

LN2 = math.log(2.0)
FAMILY = "char_rnn"


@dataclass
class TextTrainConfig:
    """Everything ``mxgen train-text`` can set (saved in each checkpoint)."""
    data: str = STDLIB
    out: str = "runs/text"
    mode: str = "lstm"
    num_embed: int = 64
    num_hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False
    seq_len: int = 100
    batch_size: int = 32
    epochs: int = 20
    optimizer: str = "adam"
    lr: float = 2e-3
    wd: float = 0.0
    lr_schedule: str = "plateau"
    lr_decay: float = 0.5
    clip: float = 5.0
    val_fraction: float = 0.1
    max_chars: Optional[int] = None
    min_char_count: Optional[int] = None
    ctx: str = "cpu"
    rnn_impl: str = "auto"
    dropout_impl: str = "auto"
    seed: int = 0
    log_interval: int = 20
    save_every: int = 0
    max_minutes: Optional[float] = None
    max_steps: Optional[int] = None
    max_bad_steps: int = 5
    dry_run: bool = False
    resume: bool = False
    progress: bool = True

    # Settings a resumed run may change; everything else comes from the checkpoint.
    RUN_LENGTH = ("epochs", "max_minutes", "max_steps", "progress", "log_interval", "out",
                  "resume", "ctx", "save_every", "dry_run", "rnn_impl",
                  "dropout_impl")
    # ... and these, when given explicitly (e.g. the corpus moved).
    RESUME_OVERRIDABLE = ("data", "max_chars")


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


def _vocab_for(text, min_count):
    if not min_count or min_count <= 1:
        return Vocab.from_text(text)
    counts = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return Vocab([c for c, n in counts.items() if n >= min_count], unk=Vocab.UNK)


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


def _save(run_dir, step, model, trainer, cfg, vocab, progress, states, point_best=False):
    """Write a full checkpoint; refuses to save non-finite parameters."""
    if not params_finite(model.collect_params().values()):
        raise MXGenError("refusing to save a checkpoint: parameters are not finite")
    writer = ckpt.CheckpointWriter(run_dir, step)
    with writer:
        save_parameters(model, writer.path("model.params"))
        trainer.save_states(writer.path("trainer.states"))
        writer.write_json("config.json", {"family": FAMILY,
                                          "model": model.config.to_dict(),
                                          "train": asdict(cfg),
                                          "kernels": {"rnn_impl": model.rnn_impl,
                                                      "dropout_impl": model.dropout_impl}})
        writer.write_json("vocab.json", vocab.to_dict())
        writer.write_json("progress.json", progress)
        flat = {"d%d_s%d" % (k, j): s.as_in_context(mx.cpu())
                for k, dev_states in enumerate(states) for j, s in enumerate(dev_states)}
        mx.nd.save(writer.path("states.nd"), flat)
    writer.point("latest")
    if point_best:
        writer.point("best")
    writer.prune()
    return writer.final_dir


def load_char_rnn(path, ctx=None, prefer="best"):
    """Load a CharRNN checkpoint: returns ``(model, vocab, ckpt_dir, meta)``."""
    ckpt_dir = ckpt.resolve(path, prefer=prefer)
    manifest = ckpt.read_manifest(ckpt_dir, required=("config.json",))
    meta = ckpt.read_json(ckpt_dir, "config.json")
    if meta.get("family") != FAMILY:
        raise MXGenError("checkpoint %s holds a %r model, not a character RNN"
                         % (ckpt_dir, meta.get("family")))
    ckpt.require_files(manifest, ckpt_dir, ("vocab.json", "model.params"))
    vocab = Vocab.from_dict(ckpt.read_json(ckpt_dir, "vocab.json"))
    try:
        config = CharRNNConfig(**meta["model"]).validate()
    except (TypeError, KeyError) as err:
        raise MXGenError("checkpoint %s has a malformed model config: %s" % (ckpt_dir, err)) \
            from None
    if config.vocab_size != len(vocab):
        raise MXGenError("checkpoint %s: model vocab_size %d does not match vocab.json (%d chars)"
                         % (ckpt_dir, config.vocab_size, len(vocab)))
    model = CharRNN.from_config(config)
    # the recurrent kernel it was trained with, where it can run (the same
    # numbers as at the end of training); MXNet's fused op otherwise
    if meta.get("kernels", {}).get("rnn_impl") == "native":
        try:
            model.set_rnn_impl("native", [ctx or mx.cpu()])
        except MXGenError:   # not loaded here, or not a CPU context
            pass
    load_parameters(model, os.path.join(ckpt_dir, "model.params"), ctx or mx.cpu())
    return model, vocab, ckpt_dir, meta


def train_text(cfg, log=print, explicit=()):
    """Train (or resume) a character-level model; returns a summary dict.

    ``explicit`` names the settings the user gave; on ``resume`` they are
    checked against the checkpoint's (see :func:`~mxgen.train.common.merge_resumed`).
    """
    started = time.time()
    ctxs = parse_ctx(cfg.ctx)
    run_dir = cfg.out
    resume_from, kept_kernels = None, {}
    if cfg.resume:
        resume_from = ckpt.resolve(run_dir, prefer="latest")
        ckpt.read_manifest(resume_from, required=("config.json", "vocab.json", "model.params",
                                                  "trainer.states", "progress.json", "states.nd"))
        saved = ckpt.read_json(resume_from, "config.json")
        if saved.get("family") != FAMILY or "train" not in saved:
            raise MXGenError("cannot resume from %s: it is not a text-model checkpoint"
                             % resume_from)
        cfg = merge_resumed(TextTrainConfig, saved["train"], cfg, explicit, log)
        # the kernels the run trained with (another kernel changes float
        # rounding and the dropout stream), unless the user names others
        kept_kernels = {k: v for k, v in saved.get("kernels", {}).items()
                        if k in ("rnn_impl", "dropout_impl") and k not in explicit}
        for key, value in kept_kernels.items():
            setattr(cfg, key, value)
    if cfg.dry_run:
        cfg.max_chars = min(cfg.max_chars or 20000, 20000)
        cfg.epochs, cfg.max_steps = 1, 2
    check_batch_split(cfg.batch_size, ctxs)
    os.makedirs(run_dir, exist_ok=True)

    # ---- data -------------------------------------------------------------
    text = load_text(cfg.data, max_chars=cfg.max_chars)
    train_str, val_str = split_train_val(text, cfg.val_fraction)
    min_count = cfg.min_char_count if cfg.min_char_count is not None else (
        20 if cfg.data == STDLIB else 1)
    if resume_from:
        vocab = Vocab.from_dict(ckpt.read_json(resume_from, "vocab.json"))
        missing = vocab.missing(text)
        if missing and vocab.unk is None:
            raise MXGenError("corpus %s has characters the checkpoint's vocabulary lacks: %s"
                             % (cfg.data, ", ".join(repr(c) for c in missing[:20])))
    else:
        vocab = _vocab_for(text, min_count)
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

    # ---- model and trainer --------------------------------------------------
    model_cfg = CharRNNConfig(len(vocab), cfg.num_embed, cfg.num_hidden, cfg.num_layers,
                              cfg.dropout, cfg.mode, cfg.tie_weights).validate()
    mx.random.seed(cfg.seed)
    model = CharRNN.from_config(model_cfg)
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    per_device = cfg.batch_size // len(ctxs)
    try:
        rnn_impl = model.set_rnn_impl(cfg.rnn_impl, ctxs, cfg.seq_len, per_device)
        dropout_impl = model.set_dropout_impl(cfg.dropout_impl, ctxs, cfg.seq_len, per_device)
    except MXGenError as err:
        if not (resume_from and kept_kernels):
            raise
        raise MXGenError("%s; the checkpoint was trained with rnn_impl=%s, dropout_impl=%s:"
                         " pass --rnn-impl / --dropout-impl to resume with other kernels"
                         " (float rounding and the dropout stream then change)"
                         % (err, kept_kernels.get("rnn_impl", cfg.rnn_impl),
                            kept_kernels.get("dropout_impl", cfg.dropout_impl))) from None
    for key in (kept_kernels if resume_from else ()):
        setattr(model, key + "_reason", "the checkpoint's kernel, kept so the run continues"
                                        " exactly")
    loss_block = LMLoss(model)
    loss_block.hybridize(static_alloc=True)
    params = list(model.collect_params().values())
    total_steps = cfg.epochs * len(train_data)
    schedule = LRSchedule(cfg.lr_schedule, cfg.lr, total_steps=total_steps, decay=cfg.lr_decay)
    try:
        trainer = gluon.Trainer(model.collect_params(), cfg.optimizer,
                                {"learning_rate": cfg.lr, "wd": cfg.wd},
                                kvstore="device" if len(ctxs) > 1 else None,
                                update_on_kvstore=False)
    except (mx.base.MXNetError, ValueError) as err:
        raise MXGenError("cannot create optimizer %r: %s" % (cfg.optimizer, err)) from None

    progress = {"epoch": 0, "batch": 0, "step": 0, "best_val_bpc": None, "bad_steps": 0,
                "schedule": schedule.state()}
    states = None
    if resume_from:
        load_parameters(model, os.path.join(resume_from, "model.params"), ctxs)
        trainer.load_states(os.path.join(resume_from, "trainer.states"))
        progress = ckpt.read_json(resume_from, "progress.json")
        schedule = LRSchedule(cfg.lr_schedule, cfg.lr, total_steps=total_steps,
                              decay=cfg.lr_decay, state=progress["schedule"])
        saved_states = mx.nd.load(os.path.join(resume_from, "states.nd"))
        per = model.states_per_layer * model.num_layers
        if len(saved_states) != per * len(ctxs):
            raise MXGenError("checkpoint %s was trained on %d device(s); resume with the same"
                             " --ctx" % (resume_from, len(saved_states) // per))
        states = [[saved_states["d%d_s%d" % (k, j)].as_in_context(c) for j in range(per)]
                  for k, c in enumerate(ctxs)]
        log("resuming from %s (epoch %d, batch %d, step %d)"
            % (resume_from, progress["epoch"], progress["batch"], progress["step"]))

    metrics = MetricsLog(os.path.join(run_dir, "metrics.jsonl"), resume=bool(resume_from))
    tokens_per_step = cfg.batch_size * cfg.seq_len
    step, steps_this_run, stop = progress["step"], 0, None
    last_ckpt = resume_from
    log("corpus %s: %d train / %d validation chars, vocab %d; %d batches of (%d, %d) per epoch"
        % (cfg.data, len(train_str), len(val_str), len(vocab), len(train_data),
           cfg.seq_len, cfg.batch_size))
    log("model %s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden, cfg.ctx))
    log("recurrent kernel: %s (%s)" % ("mxgen native %s op" % cfg.mode.upper()
                                       if rnn_impl == "native" else "MXNet fused RNN op",
                                       model.rnn_impl_reason))
    log("dropout kernel: %s (%s)" % ("mxgen native op" if dropout_impl == "native"
                                     else "MXNet op", model.dropout_impl_reason))

    def save(point_best=False):
        progress["step"] = step
        return _save(run_dir, step, model, trainer, cfg, vocab, progress, states, point_best)

    from tqdm import tqdm
    epoch = progress["epoch"]
    while epoch < cfg.epochs and stop is None:
        start_batch = progress["batch"]
        if states is None or start_batch == 0:
            states = [model.begin_state(per_device, ctx=c) for c in ctxs]
        bar = tqdm(total=len(train_data), initial=start_batch, disable=not cfg.progress,
                   desc="epoch %d" % (epoch + 1), unit="batch", leave=False)
        loss_sum, loss_tokens, t_log = mx.nd.zeros((1,), ctx=ctxs[0]), 0, time.time()
        for i in range(start_batch, len(train_data)):
            data, target = train_data[i]
            datas, targets = _split(data, ctxs), _split(target, ctxs)
            states = [[s.detach() for s in dev] for dev in states]
            trainer.set_learning_rate(schedule.lr_at(step))
            if cfg.dropout > 0:
                mx.random.seed(derive_seed(cfg.seed, step))
            with autograd.record():
                results = [loss_block(d, t, *s) for d, t, s in zip(datas, targets, states)]
            losses = [r[0] for r in results]
            autograd.backward(losses)
            states = [r[1] for r in results]
            trainer.allreduce_grads()
            norm = float(global_grad_norm(params, ctxs[0]).asscalar())  # the one sync per step
            step += 1
            steps_this_run += 1
            progress["batch"] = i + 1
            if not math.isfinite(norm):
                progress["bad_steps"] += 1
                log("step %d: non-finite loss/gradient (%s); update skipped (%d in a row)"
                    % (step, norm, progress["bad_steps"]))
                metrics.write(kind="bad_step", step=step, epoch=epoch + 1)
                states = [model.begin_state(per_device, ctx=c) for c in ctxs]
                if progress["bad_steps"] >= cfg.max_bad_steps:
                    raise MXGenError(
                        "training stopped: %d steps in a row had a non-finite loss or gradient"
                        " (last at step %d); try a lower --lr. Last good checkpoint: %s"
                        % (progress["bad_steps"], step, last_ckpt or "none"))
            else:
                progress["bad_steps"] = 0
                trainer.update(clip_batch_scale(norm, tokens_per_step, cfg.clip))
                for loss in losses:
                    loss_sum += loss.as_in_context(ctxs[0])
                loss_tokens += tokens_per_step
            bar.update(1)
            if step % cfg.log_interval == 0 and loss_tokens:
                now = time.time()
                train_loss = float(loss_sum.asscalar()) / loss_tokens
                speed = loss_tokens / (now - t_log)
                bar.set_postfix(bpc="%.3f" % (train_loss / LN2), tok_s="%.0f" % speed)
                metrics.write(kind="train", step=step, epoch=epoch + 1, loss=train_loss,
                              train_bpc=train_loss / LN2, grad_norm=norm, tokens_per_s=speed,
                              lr=trainer.learning_rate)
                loss_sum[:] = 0
                loss_tokens, t_log = 0, now
            stop = stop_reason(cfg, started, steps_this_run)
            if stop is None and cfg.save_every and step % cfg.save_every == 0:
                last_ckpt = save()
            if stop is not None:
                break
        bar.close()
        if progress["batch"] >= len(train_data):
            epoch += 1
            progress.update(epoch=epoch, batch=0)
            states = None
        # ---- end of epoch (or of this run): validate and checkpoint -----------
        record = {"kind": "val", "step": step, "epoch": epoch,
                  "elapsed_s": round(time.time() - started, 1)}
        improved = False
        if val_data is not None and (progress["batch"] == 0 or stop is not None):
            with autograd.predict_mode():
                val_loss = evaluate(loss_block, val_data, ctxs)
            val_bpc = val_loss / LN2
            val_ppl = math.exp(val_loss) if val_loss < 700 else float("inf")
            best = progress["best_val_bpc"]
            improved = math.isfinite(val_bpc) and (best is None or val_bpc < best)
            if improved:
                progress["best_val_bpc"] = val_bpc
            if progress["batch"] == 0:         # only epoch ends drive the schedule
                schedule.on_validation(val_bpc)
            progress["schedule"] = schedule.state()
            record.update(val_loss=val_loss, val_bpc=val_bpc, val_ppl=val_ppl,
                          lr=trainer.learning_rate)
            where = ("epoch %d" % epoch if progress["batch"] == 0 else
                     "epoch %d (batch %d of %d)" % (epoch + 1, progress["batch"], len(train_data)))
            log("%s step %d: validation %.4f bits/char (perplexity %.3f)%s"
                % (where, step, val_bpc, val_ppl, " *best*" if improved else ""))
        if states is None:
            states = [model.begin_state(per_device, ctx=c) for c in ctxs]
        last_ckpt = save(point_best=improved or val_data is None)
        metrics.write(**record)
        plot_curves(metrics.read(), os.path.join(run_dir, "loss.png"),
                    {"train_bpc": "train", "val_bpc": "val"}, ylabel="bits per character",
                    title="%s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden,
                                              os.path.basename(cfg.data.rstrip("/"))))
    if stop:
        log("stopped early (%s) at step %d; resume with --resume" % (stop, step))
    return {"run_dir": run_dir, "checkpoint": last_ckpt, "step": step, "epoch": epoch,
            "best_val_bpc": progress["best_val_bpc"], "stopped": stop, "vocab": vocab,
            "model": model, "config": cfg}
