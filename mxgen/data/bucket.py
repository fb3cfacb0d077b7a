"""Bucketed batches for corpora of independent, variable-length samples.

Each sample (a line or a file) becomes ``[eos] + chars + [eos]``; the model reads
it shifted by one: inputs ``[eos] + chars``, targets ``chars + [eos]``.  Samples
of similar length are grouped into buckets so that a batch is padded only up to
its bucket's length; the mask marks the real positions so that padding adds
nothing to the loss.
"""
import numpy as np

from ..errors import MXGenError
from .corpus import list_text_files, read_text_file

__all__ = ["load_samples", "BucketIterator"]


def load_samples(spec, per="line"):
    """Read independent samples: one per non-empty line, or one per file."""
    if per not in ("line", "file"):
        raise MXGenError("samples are split per 'line' or per 'file', not %r" % per)
    samples = []
    for path in list_text_files(spec):
        text = read_text_file(path)
        if per == "file":
            samples.append(text)
        else:
            samples.extend(line for line in text.split("\n") if line)
    samples = [s for s in samples if s]
    if not samples:
        raise MXGenError("no non-empty samples in %s" % spec)
    return samples


class BucketIterator:
    """Batches of similar-length samples, padded, with a loss mask.

    Parameters
    ----------
    samples : list of 1-D int arrays
        Encoded samples without markers.
    eos_id : int
        End-of-sample id; it also pads.
    batch_size : int
    num_buckets : int
        Bucket boundaries are length quantiles, so buckets hold similar numbers
        of samples.  Ignored if ``bucket_keys`` is given.
    bucket_keys : list of int, optional
        Explicit maximum lengths (inputs, i.e. ``len(sample) + 1``).
    shuffle : bool
    seed : int
        Shuffling is seeded per epoch (``seed + epoch``) so it is reproducible
        and resumable.

    Each batch is ``(data, target, mask)``, all ``(T, N)`` (TNC), T = the
    bucket's key; mask is float32 1 for real positions, 0 for padding.
    The last batch of a bucket may be smaller than ``batch_size``.
    """

    def __init__(self, samples, eos_id, batch_size, num_buckets=10, bucket_keys=None,
                 shuffle=True, seed=0):
        if not samples:
            raise MXGenError("bucket iterator needs at least one sample")
        if batch_size < 1:
            raise MXGenError("batch size must be >= 1, got %d" % batch_size)
        self.samples = [np.asarray(s, dtype=np.int32) for s in samples]
        self.eos_id, self.batch_size = int(eos_id), batch_size
        self.shuffle, self.seed = shuffle, seed
        lengths = np.array([len(s) + 1 for s in self.samples])
        if bucket_keys is None:
            qs = np.linspace(0, 100, num_buckets + 1)[1:]
            bucket_keys = np.unique(np.ceil(np.percentile(lengths, qs)).astype(int))
        self.bucket_keys = sorted(int(k) for k in bucket_keys)
        if lengths.max() > self.bucket_keys[-1]:
            raise MXGenError("longest sample (%d steps) exceeds the largest bucket (%d)"
                             % (lengths.max(), self.bucket_keys[-1]))
        which = np.searchsorted(self.bucket_keys, lengths)   # smallest key >= length
        self.buckets = [np.flatnonzero(which == b) for b in range(len(self.bucket_keys))]
        self._lengths = lengths

    def _batches(self, epoch):
        rng = np.random.RandomState(self.seed + epoch)
        batches = []
        for b, members in enumerate(self.buckets):
            if self.shuffle:
                members = rng.permutation(members)
            for i in range(0, len(members), self.batch_size):
                batches.append((b, members[i:i + self.batch_size]))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __len__(self):
        return sum(-(-len(m) // self.batch_size) for m in self.buckets)

    def epoch(self, epoch=0, start=0):
        """Yield the batches of one epoch, from batch index ``start`` on."""
        for b, members in self._batches(epoch)[start:]:
            yield self._make(self.bucket_keys[b], members)

    def __iter__(self):
        return self.epoch(0)

    def _make(self, key, members):
        num = len(members)
        data = np.full((key, num), self.eos_id, dtype=np.int32)
        target = np.full((key, num), self.eos_id, dtype=np.int32)
        mask = np.zeros((key, num), dtype=np.float32)
        for n, idx in enumerate(members):
            s = self.samples[idx]
            length = len(s) + 1
            data[0, n] = self.eos_id
            data[1:length, n] = s
            target[:length - 1, n] = s
            target[length - 1, n] = self.eos_id
            mask[:length, n] = 1.0
        return data, target, mask

    def stats(self):
        """Bucket sizes and padding, as a dict."""
        rows, real, padded = [], 0, 0
        for key, members in zip(self.bucket_keys, self.buckets):
            n_batches = -(-len(members) // self.batch_size)
            tokens = int(self._lengths[members].sum())
            rows.append({"key": key, "samples": int(len(members)), "batches": n_batches})
            real += tokens
            padded += key * len(members)
        return {"buckets": rows, "num_samples": len(self.samples),
                "real_tokens": real, "padded_tokens": padded,
                "padding_ratio": (padded - real) / padded if padded else 0.0}
