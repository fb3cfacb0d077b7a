"""Independent samples in length buckets: the ``--samples`` source of the
language-model loop (:mod:`mxgen.train.lm`).

``mxgen train-text --samples lines|paragraphs|files``: each sample (a name,
a line of verse, a docstring, a file) is read as ``[eos] + chars`` and
predicts ``chars + [eos]``, so the model learns where samples end and
generation can stop by itself.  Samples of similar length share a bucket;
a batch is padded only to its bucket's length, a mask takes the padding out
of the loss, every batch starts from fresh zero states, and the update
divides by the real tokens of the whole global batch, so it equals the mean
over real tokens that an unpadded, per-sample computation gives.  Every
batch of a bucket has one shape (the leftovers of a bucket move up to the
next, and the epoch's last batch is filled with empty columns), and each
bucket gets its own hybridized graph: at most ``--buckets`` graphs, each
planned once.  A batch holds about ``--batch-size`` x ``--seq-len``
positions, as a streaming batch does, so short samples come in
proportionally bigger batches.
"""
import numpy as np

from ..data.bucket import BucketIterator, load_samples, padding_optimal_keys, token_batch_sizes
from ..data.vocab import Vocab
from ..errors import MXGenError
from .lm import text_samples

__all__ = ["SampleSource", "sample_corpus", "UNITS"]

# --samples value -> the unit load_samples splits by
UNITS = {"lines": "line", "paragraphs": "paragraph", "files": "file"}


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
        vocab = Vocab.build("".join(fits), min_count, eos=Vocab.EOS)
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


class SampleSource:
    """Batches of whole samples in length buckets (see the module docstring);
    a seeded random ``--val-fraction`` of the samples is held out."""
    static_shape = True
    eval_label = "held-out samples (end marks included)"

    def __init__(self, run):
        cfg = self.cfg = run.cfg
        self.run = run
        if run.cluster.on_servers:
            raise MXGenError("--samples divides each update by the batch's real tokens, which"
                             " the servers of dist_async cannot vary; use --kvstore dist_sync")
        vocab = Vocab.from_dict(run.read_json("vocab.json")) if run.resume_from else None
        self.vocab, train, val, keys, self.report = sample_corpus(cfg, vocab)
        self.keys = keys
        # a batch holds about batch_size x seq_len positions, as a streaming one
        workers = run.cluster.num_workers
        sizes = token_batch_sizes(keys, cfg.batch_size * cfg.seq_len, workers * len(run.ctxs))
        self.train = BucketIterator(train, self.vocab.eos_id, sizes, bucket_keys=keys,
                                    shuffle=True, seed=cfg.seed, pad_last=True)
        # every rank evaluates all held-out samples in batches of its own width,
        # through the training graphs (same shapes): no extra graphs, no reduction
        self.val = BucketIterator(val, self.vocab.eos_id, [b // workers for b in sizes],
                                  bucket_keys=keys, shuffle=False, pad_last=True) if val else None
        self.num_batches = len(self.train)
        self.measure = (keys[len(keys) // 2], sizes[len(keys) // 2])   # a typical bucket
        self.has_validation = self.val is not None
        self.stats = self.train.stats()
        self.title = "%s %dx%d on %s samples" % (cfg.mode, cfg.num_layers, cfg.num_hidden,
                                                 cfg.samples)

    def server_schedule(self, total_steps):
        return None

    def bind(self, model, run):
        self.model = model

    def _fresh(self, columns):
        per_device = columns // len(self.run.ctxs)
        return [self.model.begin_state(per_device, ctx=c) for c in self.run.ctxs]

    def arrays(self):
        return {}

    def restore(self, run):
        pass

    def meta(self):
        return {"samples": {"unit": self.cfg.samples, "bucket_keys": self.keys}}

    def log_setup(self, run):
        cfg, report, stats = self.cfg, self.report, self.stats
        run.log("samples %s (%s): %d train / %d held out, %d characters, vocab %d (with the end"
                " mark); %d left out as longer than --max-len %d"
                % (cfg.data, cfg.samples, report["train"], report["val"], report["chars"],
                   len(self.vocab), report["too_long"], cfg.max_len))
        run.log("buckets (length x samples per batch: batches) %s; %d batches per epoch,"
                " padding %.1f%%" % (", ".join("%dx%d: %d" % (r["key"], r["batch_size"],
                                                              r["batches"])
                                               for r in stats["buckets"]),
                                     self.num_batches, 100 * stats["padding_ratio"]))

    def begin_epoch(self, epoch, start_batch):
        self.batches = self.train.epoch(epoch, start=start_batch)

    def next_batch(self):
        """This rank's columns of the next global batch, fresh states, and
        the global batch's real tokens (the update's divisor)."""
        data, target, mask = next(self.batches)
        lo, hi = self.run.cluster.shard(data.shape[1])
        return (data[:, lo:hi], target[:, lo:hi], mask[:, lo:hi], mask.sum(),
                self._fresh(hi - lo))

    def carry(self, states):
        pass                          # every batch starts from zero states

    def end_epoch(self, epoch_done):
        pass

    def evaluate(self, step):
        """Mean masked loss (nats per real token, end marks included) over the
        held-out samples, through the training graphs of each bucket."""
        return step.evaluate(self.val, lambda per_device, carried: [
            self.model.begin_state(per_device, ctx=c) for c in self.run.ctxs])

    def samples(self, model):
        return text_samples(model, self.vocab, self.cfg.seed, num=5, length=100,
                            stop_at_eos=True)

    def summary(self):
        return {"padding_ratio": self.stats["padding_ratio"]}
