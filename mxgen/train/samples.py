"""Training a character model on independent samples, in length buckets.

``mxgen train-text --samples lines|paragraphs|files``: each sample (a name,
a line of verse, a docstring, a file) is read as ``[eos] + chars`` and
predicts ``chars + [eos]``, so the model learns where samples end and
generation can stop by itself.  Samples of similar length share a bucket;
a batch is padded only to its bucket's length, and a mask takes the
padding out of the loss.  The step, per batch of whole samples::

    fresh zero states -> masked summed loss over devices -> backward
    -> allreduce -> global-norm clip -> update / (real tokens of the batch)

so the update equals the mean over real tokens that an unpadded,
per-sample computation gives.  Every batch of a bucket has one shape (the
leftovers of a bucket move up to the next, and the epoch's last batch is
filled with empty columns), and each bucket gets its own hybridized graph:
at most ``--buckets`` graphs, each planned once.  A batch holds about
``--batch-size`` x ``--seq-len`` positions, as a streaming batch does, so
short samples come in proportionally bigger batches.
"""
import math
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data.bucket import BucketIterator, load_samples, padding_optimal_keys, token_batch_sizes
from ..data.vocab import Vocab
from ..errors import MXGenError
from ..models import get_model
from ..utils.metrics import plot_curves
from .common import LRSchedule, clip_batch_scale, global_grad_norm
from .text import LMLoss, TokenMeter, build_vocab

__all__ = ["SampleStep", "build_sample_step", "train_samples", "evaluate_samples",
           "sample_corpus", "UNITS"]

LN2 = math.log(2.0)
# --samples value -> the unit load_samples splits by
UNITS = {"lines": "line", "paragraphs": "paragraph", "files": "file"}


class SampleStep:
    """One update on a padded batch of whole samples.

    ``step(data, target, mask, real_tokens)``: this process's columns
    ``(T, N)`` of a global batch (ids, ids, float mask; NumPy or NDArray)
    and the number of real tokens in the whole global batch, which the
    update divides by.  Returns ``(losses, norm)``: the masked loss sum on
    each device (NDArrays, not read) and the global norm of the summed
    gradient (a float: the step's one host sync).  A non-finite norm skips
    the update.

    ``graph(T)`` is the hybridized loss graph of bucket length ``T``; the
    graphs share the model's parameters and ``graphs`` holds them all.
    """

    def __init__(self, model, trainer, ctxs, clip, hybridize=True):
        self.model, self.trainer, self.ctxs, self.clip = model, trainer, ctxs, clip
        self.hybridize = hybridize
        self.graphs = {}
        self.params = list(model.collect_params().values())

    def graph(self, length):
        block = self.graphs.get(length)
        if block is None:
            block = LMLoss(self.model, masked=True)
            if self.hybridize:
                # one fixed shape per bucket: planned once, never re-planned
                block.hybridize(static_alloc=True, static_shape=True)
            self.graphs[length] = block
        return block

    def split(self, *arrays):
        return [gluon.utils.split_and_load(a, self.ctxs, batch_axis=1, even_split=True)
                for a in arrays]

    def __call__(self, data, target, mask, real_tokens):
        block = self.graph(data.shape[0])
        datas, targets, masks = self.split(data, target, mask)
        per_device = data.shape[1] // len(self.ctxs)
        states = [self.model.begin_state(per_device, ctx=c) for c in self.ctxs]
        with autograd.record():
            losses = [block(d, t, m, *s)[0]
                      for d, t, m, s in zip(datas, targets, masks, states)]
        autograd.backward(losses)
        self.trainer.allreduce_grads()
        norm = float(global_grad_norm(self.params, self.ctxs[0]).asscalar())
        if math.isfinite(norm):
            self.trainer.update(clip_batch_scale(norm, float(real_tokens), self.clip))
        return losses, norm


def build_sample_step(model_cfg, cfg, ctxs, cluster, hybridize=True, typical=None):
    """Model, kernels and trainer as ``train_samples`` builds them: returns
    ``(model, step)``.  ``typical``: the (length, global batch) of a typical
    bucket, where the kernel choice is measured."""
    model = get_model("char_rnn", **model_cfg.to_dict())
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    length, batch = typical or (cfg.seq_len, cfg.batch_size)
    per_device = max(1, batch // cluster.num_workers // len(ctxs))
    model.set_rnn_impl(cfg.rnn_impl, ctxs, length, per_device)
    model.set_dropout_impl(cfg.dropout_impl, ctxs, length, per_device)
    trainer = cluster.trainer(model.collect_params(), cfg.optimizer,
                              {"learning_rate": cfg.lr, "wd": cfg.wd})
    return model, SampleStep(model, trainer, ctxs, cfg.clip, hybridize)


def sample_corpus(cfg, vocab=None):
    """Samples, vocabulary (with an end mark) and bucket bounds.

    Returns ``(vocab, train, val, keys, report)``: encoded training and
    held-out samples (a seeded random ``val_fraction`` of them), the bucket
    lengths (those padding the training samples least, the last one
    covering every sample) and a dict for the log.
    """
    samples = load_samples(cfg.data, UNITS[cfg.samples], max_chars=cfg.max_chars)
    if cfg.max_chars:
        total, kept = 0, []
        for s in samples:
            if total >= cfg.max_chars:
                break
            kept.append(s)
            total += len(s)
        samples = kept
    fits = [s for s in samples if len(s) + 1 <= cfg.max_len]
    report = {"samples": len(samples), "too_long": len(samples) - len(fits)}
    if not fits:
        raise MXGenError("every sample of %s is longer than --max-len %d characters (the"
                         " shortest has %d); raise --max-len"
                         % (cfg.data, cfg.max_len, min(len(s) for s in samples) + 1))
    if vocab is None:
        min_count = cfg.min_char_count or 1
        vocab = build_vocab("".join(fits), min_count, eos=Vocab.EOS)
    elif vocab.eos_id is None:
        raise MXGenError("the checkpoint's vocabulary has no end-of-sample mark: it was not"
                         " trained with --samples")
    missing = vocab.missing("".join(fits))
    if missing and vocab.unk is None:
        raise MXGenError("samples of %s have characters the checkpoint's vocabulary lacks: %s"
                         % (cfg.data, ", ".join(repr(c) for c in missing[:20])))
    order = np.random.RandomState(cfg.seed).permutation(len(fits))
    num_val = int(round(len(fits) * cfg.val_fraction))
    if num_val == len(fits):
        num_val -= 1
    val = [vocab.encode(fits[i]) for i in np.sort(order[:num_val])]
    train = [vocab.encode(fits[i]) for i in np.sort(order[num_val:])]
    lengths = np.array([len(s) + 1 for s in train])
    keys = padding_optimal_keys(lengths, cfg.buckets)
    keys[-1] = max(keys[-1], max(len(s) + 1 for s in train + val))
    report.update(train=len(train), val=len(val),
                  chars=int(lengths.sum()) - len(train))
    return vocab, train, val, keys, report


def evaluate_samples(step, batches):
    """Mean masked loss (nats per real token, end marks included) over the
    held-out samples, through the training graphs of each bucket."""
    total, tokens = None, 0.0
    for data, target, mask in batches:
        block = step.graph(data.shape[0])
        datas, targets, masks = step.split(data, target, mask)
        per_device = data.shape[1] // len(step.ctxs)
        for d, t, m, c in zip(datas, targets, masks, step.ctxs):
            loss = block(d, t, m, *step.model.begin_state(per_device, ctx=c))[0]
            loss = loss.as_in_context(step.ctxs[0])
            total = loss if total is None else total + loss
        tokens += float(mask.sum())
    return float(total.asscalar()) / tokens


def train_samples(run, model_config):
    """The ``--samples`` loop of :func:`~mxgen.train.text.train_text` (which
    made ``run``); returns its summary dict."""
    cfg, ctxs, progress, log = run.cfg, run.ctxs, run.progress, run.log
    if run.cluster.on_servers:
        raise MXGenError("--samples divides each update by the batch's real tokens, which the"
                         " servers of dist_async cannot vary; use --kvstore dist_sync")
    vocab = Vocab.from_dict(run.read_json("vocab.json")) if run.resume_from else None
    vocab, train, val, keys, report = sample_corpus(cfg, vocab)
    # a batch holds about batch_size x seq_len positions, as a streaming one
    workers = run.cluster.num_workers
    sizes = token_batch_sizes(keys, cfg.batch_size * cfg.seq_len, workers * len(ctxs))
    train_batches = BucketIterator(train, vocab.eos_id, sizes, bucket_keys=keys,
                                   shuffle=True, seed=cfg.seed, pad_last=True)
    # every rank evaluates all held-out samples in batches of its own width,
    # through the training graphs (same shapes): no extra graphs, no reduction
    val_batches = BucketIterator(val, vocab.eos_id, [b // workers for b in sizes],
                                 bucket_keys=keys, shuffle=False, pad_last=True) if val else None
    typical = (keys[len(keys) // 2], sizes[len(keys) // 2])
    if run.resume_from:      # keep the kernels trained with (rounding, dropout stream)
        for key, value in run.read_json("config.json").get("kernels", {}).items():
            if key in ("rnn_impl", "dropout_impl") and key not in run.explicit:
                setattr(cfg, key, value)
    mx.random.seed(cfg.seed)
    model, step_fn = build_sample_step(model_config(len(vocab)), cfg, ctxs, run.cluster,
                                       typical=typical)
    total_steps = cfg.epochs * len(train_batches)
    schedule = LRSchedule(cfg.lr_schedule, cfg.lr, total_steps=total_steps, decay=cfg.lr_decay,
                          state=progress.get("schedule"))
    progress.setdefault("best_val_bpc", None)
    progress.setdefault("bad_steps", 0)
    run.track(nets={"model": model}, trainers={"trainer": step_fn.trainer},
              meta=lambda: {"model": model.config.to_dict(),
                            "kernels": {"rnn_impl": model.rnn_impl,
                                        "dropout_impl": model.dropout_impl},
                            "samples": {"unit": cfg.samples, "bucket_keys": keys},
                            "files": {"vocab.json": vocab.to_dict()}})
    run.restore()
    stats = train_batches.stats()
    log("samples %s (%s): %d train / %d held out, %d characters, vocab %d (with the end mark);"
        " %d left out as longer than --max-len %d"
        % (cfg.data, cfg.samples, report["train"], report["val"], report["chars"], len(vocab),
           report["too_long"], cfg.max_len))
    log("buckets (length x samples per batch: batches) %s; %d batches per epoch, padding"
        " %.1f%%" % (", ".join("%dx%d: %d" % (r["key"], r["batch_size"], r["batches"])
                                for r in stats["buckets"]),
                     len(train_batches), 100 * stats["padding_ratio"]))
    log("model %s %dx%d on %s; recurrent kernel: %s (%s)"
        % (cfg.mode, cfg.num_layers, cfg.num_hidden, cfg.ctx,
           "mxgen native op" if model.rnn_impl == "native" else "MXNet fused RNN op",
           model.rnn_impl_reason))

    lr = schedule.lr_at(max(run.step - 1, 0))
    for epoch in run.epochs():
        meter = TokenMeter(run)
        batches = train_batches.epoch(epoch, start=progress["batch"])
        for _ in run.batches(len(train_batches)):
            data, target, mask = next(batches)
            lr = schedule.lr_at(run.step - 1)
            step_fn.trainer.set_learning_rate(lr)
            if cfg.dropout > 0:
                run.seed_step()
            lo, hi = run.cluster.shard(data.shape[1])      # this rank's columns
            losses, norm = step_fn(data[:, lo:hi], target[:, lo:hi], mask[:, lo:hi],
                                   mask.sum())
            if not run.step_finite(norm, epoch):
                continue
            meter.add(losses, float(mask[:, lo:hi].sum()))
            if run.log_due():
                meter.write(epoch, norm, lr)
        epoch_done = progress["batch"] == 0
        record = {"kind": "val", "step": run.step, "epoch": run.epoch, "elapsed_s": run.elapsed()}
        improved = False
        if val_batches is not None:
            with autograd.predict_mode():
                val_loss = evaluate_samples(step_fn, val_batches)
            val_bpc = val_loss / LN2
            best = progress["best_val_bpc"]
            improved = math.isfinite(val_bpc) and (best is None or val_bpc < best)
            if improved:
                progress["best_val_bpc"] = val_bpc
            if epoch_done:
                schedule.on_validation(val_bpc)
            record.update(val_loss=val_loss, val_bpc=val_bpc, lr=lr)
            log("%s step %d: held-out samples %.4f bits/char (end marks included)%s"
                % ("epoch %d" % run.epoch if epoch_done else "epoch %d (batch %d of %d)"
                   % (run.epoch + 1, progress["batch"], len(train_batches)),
                   run.step, val_bpc, " *best*" if improved else ""))
        progress["schedule"] = schedule.state()
        run.metrics.write(**record)
        if run.tensorboard is not None:
            from ..generation import generate
            texts = generate(model, vocab, "", 100, temperature=0.8, num_samples=5,
                             seed=cfg.seed, native=False, stop_at_eos=True)
            run.tensorboard.text("samples", "\n\n".join(texts), run.step)
        run.save(point_best=improved or val_batches is None)
        if run.cluster.is_writer:
            plot_curves(run.metrics.read(), os.path.join(cfg.out, "loss.png"),
                        {"train_bpc": "train", "val_bpc": "held out"}, ylabel="bits per character",
                        title="%s %dx%d on %s samples" % (cfg.mode, cfg.num_layers,
                                                          cfg.num_hidden, cfg.samples))
    return run.finish(best_val_bpc=progress["best_val_bpc"], vocab=vocab, model=model,
                      graphs=len(step_fn.graphs), padding_ratio=stats["padding_ratio"])
