"""Training character-level language models: ``mxgen train-text``.

A corpus is read as one stream (truncated BPTT, :class:`StreamSource`) or,
with ``--samples``, as independent samples in length buckets
(:class:`~mxgen.train.samples.SampleSource`); either feeds the one language
model loop of :mod:`mxgen.train.lm`.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

import mxnet as mx
from mxnet import gluon

from ..data.batchify import BPTTBatches
from ..data.corpus import STDLIB, load_text, split_train_val
from ..data.vocab import Vocab
from ..errors import MXGenError
from ..fields import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges, field
from ..models.char_rnn import FAMILY, CharRNNConfig
from ..nn.dropout import DROPOUT_IMPLS
from ..nn.rnn import DTYPE_CHOICES, IMPLS, MODES
from .common import LRSchedule, Run, RunConfig
from .lm import LMTask, LR_FLOOR, text_samples
from .samples import UNITS, SampleSource
from .schedule import ServerCosine

__all__ = ["TextTrainConfig", "StreamSource", "train_text"]


@dataclass
class TextTrainConfig(RunConfig):
    """Everything ``mxgen train-text`` can set (saved in each checkpoint).

    Each field's ``help`` (and ``choices``) become its command-line flag.
    """
    data: str = field(STDLIB, "corpus: a file, a directory, a glob, or 'stdlib' (this"
                              " Python's standard-library sources; no download)")
    out: str = field("runs/text", "run directory", group="run")
    epochs: int = field(20, "epochs (a resumed run keeps its own unless given)", group="run")
    mode: str = field(CharRNNConfig.mode, "recurrent cell", group="model", choices=MODES)
    num_embed: int = field(CharRNNConfig.num_embed, "embedding size", group="model")
    num_hidden: int = field(CharRNNConfig.num_hidden, "hidden units per layer", group="model")
    num_layers: int = field(CharRNNConfig.num_layers, "recurrent layers", group="model")
    dropout: float = field(CharRNNConfig.dropout, "dropout on embeddings, between layers and"
                                                  " on the output", group="model")
    tie_weights: bool = field(CharRNNConfig.tie_weights, "share embedding and decoder weights"
                                                         " (needs num_embed == num_hidden)",
                              group="model")
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
                          choices=IMPLS)
    dropout_impl: str = field("auto", "dropout kernel: MXNet's Dropout or mxgen's native op"
                                      " (same distribution; auto = native where it measures"
                                      " faster)", choices=DROPOUT_IMPLS)
    dtype: str = field("auto", "what the recurrent layers multiply in: bfloat16 (mxgen's"
                               " native ops, float32 accumulation; weights, optimizer, loss"
                               " and clipping stay float32), float32, float16 (GPUs), or"
                               " auto: bfloat16 where the CPU has AVX512_BF16 and it measures"
                               " faster here (the log says which and why)",
                       choices=DTYPE_CHOICES)
    max_bad_steps: int = field(5, "stop after this many non-finite steps in a row",
                               group="run")
    samples: Optional[str] = field(None, "train on independent samples instead of one stream:"
                                         " one per line, per paragraph (text between blank"
                                         " lines) or per file; each ends with an end mark that"
                                         " generation learns to stop at; batches come from"
                                         " length buckets and hold about --batch-size x"
                                         " --seq-len positions each",
                                   choices=tuple(UNITS))
    buckets: int = field(12, "length buckets of --samples (the lengths that pad least)")
    max_len: int = field(256, "--samples longer than this (characters + end mark) are left"
                              " out; the log counts them")

    CHANGEABLE_ON_RESUME = RunConfig.CHANGEABLE_ON_RESUME + ("rnn_impl", "dropout_impl",
                                                            "dtype", "max_bad_steps")
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
        names = [f.name for f in dataclasses.fields(CharRNNConfig) if f.name != "vocab_size"]
        return CharRNNConfig(vocab_size, **{n: getattr(self, n) for n in names}).validate()


class StreamSource:
    """The corpus as one stream for truncated BPTT: every batch continues
    the previous one's ``batch_size`` columns, so the recurrent states carry
    over (detached) from batch to batch, are reset at each epoch start, and
    are checkpointed; the last ``--val-fraction`` of the text is held out."""
    static_shape = False
    eval_label = "validation"

    def __init__(self, run):
        cfg = self.cfg = run.cfg
        self.run = run
        if run.resume_from and not os.path.isfile(os.path.join(run.resume_from, "states.nd")):
            raise MXGenError("checkpoint %s is missing states.nd" % run.resume_from)
        text = load_text(cfg.data, max_chars=cfg.max_chars)
        train_str, val_str = split_train_val(text, cfg.val_fraction)
        if run.resume_from:
            self.vocab = Vocab.from_dict(run.read_json("vocab.json"))
            missing = self.vocab.missing(text)
            if missing and self.vocab.unk is None:
                raise MXGenError("corpus %s has characters the checkpoint's vocabulary lacks: %s"
                                 % (cfg.data, ", ".join(repr(c) for c in missing[:20])))
        else:
            min_count = cfg.min_char_count if cfg.min_char_count is not None else (
                20 if cfg.data == STDLIB else 1)
            self.vocab = Vocab.build(text, min_count)
        self.train = BPTTBatches(self.vocab.encode(train_str), cfg.batch_size, cfg.seq_len,
                                 name="training text (%s)" % cfg.data)
        self.val = None
        if val_str:
            val_batch = min(cfg.batch_size, len(val_str) // (cfg.seq_len + 1))
            val_batch -= val_batch % len(run.ctxs)
            if val_batch < 1:
                raise MXGenError("validation split of %d characters is too short for seq_len"
                                 " %d; lower --seq-len or raise --val-fraction"
                                 % (len(val_str), cfg.seq_len))
            self.val = BPTTBatches(self.vocab.encode(val_str), val_batch, cfg.seq_len,
                                   name="validation text")
        self.sizes = (len(train_str), len(val_str))
        self.num_batches = len(self.train)
        self.measure = (cfg.seq_len, cfg.batch_size)
        self.has_validation = self.val is not None
        self.lo, self.hi = run.cluster.shard(cfg.batch_size)   # this rank's columns
        self.per_device = (self.hi - self.lo) // len(run.ctxs)
        self.title = "%s %dx%d on %s" % (cfg.mode, cfg.num_layers, cfg.num_hidden,
                                         os.path.basename(cfg.data.rstrip("/")))
        self.states = None

    def server_schedule(self, total_steps):
        """dist_async: the learning-rate schedule as the servers' optimizer
        runs it, counted in server updates (one per worker step)."""
        cfg, run = self.cfg, self.run
        if not run.cluster.on_servers:
            return None
        if cfg.lr_schedule == "plateau":
            raise MXGenError("--lr-schedule plateau changes the rate after validation, but"
                             " under dist_async the optimizer runs on the servers and cannot"
                             " be changed; pass --lr-schedule cosine or constant")
        if cfg.lr_schedule == "constant":
            return None
        return {"lr_scheduler": ServerCosine(cfg.lr, LR_FLOOR, total_steps,
                                             run.cluster.num_workers, first_step=run.step)}

    def bind(self, model, run):
        self.model = model

    def _fresh(self):
        return [self.model.begin_state(self.per_device, ctx=c) for c in self.run.ctxs]

    def arrays(self):
        """The recurrent states over the global batch, ``{"s<j>": (1, B, H)}``
        (gathered from every rank: a collective in a distributed run)."""
        states, cluster = self.states, self.run.cluster
        return {"states": {
            "s%d" % j: cluster.gather(j, mx.nd.concat(*[dev[j].as_in_context(mx.cpu())
                                                        for dev in states], dim=1), axis=1)
            for j in range(len(states[0]))}}

    def restore(self, run):
        """The resumed run's states for this rank's columns, split over its devices."""
        saved = run.load_arrays("states")
        model = self.model
        per = model.states_per_layer * model.num_layers
        if sorted(saved) != sorted("s%d" % j for j in range(per)):
            raise MXGenError("checkpoint %s holds recurrent states %s; this model needs %d"
                             % (run.resume_from, ", ".join(sorted(saved)), per))
        split = [gluon.utils.split_and_load(saved["s%d" % j][:, self.lo:self.hi], run.ctxs,
                                            batch_axis=1) for j in range(per)]
        self.states = [[split[j][k] for j in range(per)] for k in range(len(run.ctxs))]

    def meta(self):
        return {}

    def log_setup(self, run):
        cfg = self.cfg
        run.log("corpus %s: %d train / %d validation chars, vocab %d; %d batches of (%d, %d)"
                " per epoch" % ((cfg.data,) + self.sizes + (len(self.vocab), self.num_batches,
                                                             cfg.seq_len, cfg.batch_size)))

    def begin_epoch(self, epoch, start_batch):
        if self.states is None or start_batch == 0:
            self.states = self._fresh()
        self.position = start_batch

    def next_batch(self):
        """``(data, target, mask, normaliser, states)`` of this rank's columns."""
        data, target = (a[:, self.lo:self.hi] for a in self.train[self.position])
        self.position += 1
        return data, target, None, None, self.states

    def carry(self, states):
        """The states after a step (None: the step failed, start afresh)."""
        self.states = states if states is not None else self._fresh()

    def end_epoch(self, epoch_done):
        if epoch_done:               # the next epoch, and this checkpoint, start from zero
            self.states = self._fresh()

    def evaluate(self, step):
        """Mean loss (nats per character) over the held-out tail, states carried."""
        return step.evaluate(((d, t, None) for d, t in self.val),
                             lambda per_device, carried: carried or [
                                 self.model.begin_state(per_device, ctx=c)
                                 for c in self.run.ctxs])

    def samples(self, model):
        return text_samples(model, self.vocab, self.cfg.seed)

    def summary(self):
        return {}


def train_text(cfg: TextTrainConfig, log: Optional[Callable[[str], None]] = None,
               explicit: Iterable[str] = ()) -> Dict[str, Any]:
    """Train (or resume) a character-level model; returns a summary dict.

    ``explicit`` names the settings the user gave; on ``resume`` they are
    checked against the checkpoint's (see :func:`~mxgen.train.common.merge_resumed`).
    """
    with Run(cfg, FAMILY, explicit, log) as run:
        source = (SampleSource if run.cfg.samples else StreamSource)(run)
        return run.train(LMTask(run, source))
