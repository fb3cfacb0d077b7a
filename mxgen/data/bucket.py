"""Bucketed batches for corpora of independent, variable-length samples.

Each sample (a line or a file) becomes ``[eos] + chars + [eos]``; the model reads
it shifted by one: inputs ``[eos] + chars``, targets ``chars + [eos]``.  Samples
of similar length are grouped into buckets so that a batch is padded only up to
its bucket's length; the mask marks the real positions so that padding adds
nothing to the loss.
"""
import re

import numpy as np

from ..errors import MXGenError
from .corpus import (STDLIB, STDLIB_NAMES, list_text_files, read_text_file, stdlib_files,
                     stdlib_names)

__all__ = ["load_samples", "BucketIterator", "SAMPLE_UNITS"]

SAMPLE_UNITS = ("line", "paragraph", "file")


def load_samples(spec, per="line"):
    """Read independent samples: one per non-empty line, per paragraph
    (text between blank lines, stripped), or per file.  ``spec`` is a file,
    folder or glob, ``"stdlib"`` (the standard-library sources) or
    ``"stdlib-names"`` (its function names, one sample each)."""
    if per not in SAMPLE_UNITS:
        raise MXGenError("samples are split per %s, not %r" % (", ".join(SAMPLE_UNITS), per))
    if spec == STDLIB_NAMES:
        return stdlib_names()
    samples = []
    paths, errors = (stdlib_files(), "skip") if spec == STDLIB else (list_text_files(spec),
                                                                      "strict")
    for path in paths:
        text = read_text_file(path, errors=errors)
        if text is None:
            continue
        text = text.replace("\r\n", "\n")
        if per == "file":
            samples.append(text.strip("\n"))
        elif per == "paragraph":
            samples.extend(p.strip("\n") for p in re.split(r"\n(?:[ \t]*\n)+", text))
        else:
            samples.extend(text.split("\n"))
    samples = [s for s in samples if s.strip()]
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
    The last batch of a bucket may be smaller than ``batch_size``; with
    ``pad_last`` it is filled up with empty columns (mask 0), so that every
    batch of a bucket has one shape (one cached graph per bucket).
    """

    def __init__(self, samples, eos_id, batch_size, num_buckets=10, bucket_keys=None,
                 shuffle=True, seed=0, pad_last=False):
        if not samples:
            raise MXGenError("bucket iterator needs at least one sample")
        if batch_size < 1:
            raise MXGenError("batch size must be >= 1, got %d" % batch_size)
        self.samples = [np.asarray(s, dtype=np.int32) for s in samples]
        self.eos_id, self.batch_size = int(eos_id), batch_size
        self.shuffle, self.seed, self.pad_last = shuffle, seed, pad_last
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
        num = self.batch_size if self.pad_last else len(members)
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
        """Bucket sizes and padding (every position computed, the filler
        columns of ``pad_last`` included), as a dict."""
        rows, real, padded = [], 0, 0
        for key, members in zip(self.bucket_keys, self.buckets):
            n_batches = -(-len(members) // self.batch_size)
            tokens = int(self._lengths[members].sum())
            rows.append({"key": key, "samples": int(len(members)), "batches": n_batches})
            real += tokens
            padded += key * (n_batches * self.batch_size if self.pad_last else len(members))
        return {"buckets": rows, "num_samples": len(self.samples),
                "real_tokens": real, "padded_tokens": padded,
                "padding_ratio": (padded - real) / padded if padded else 0.0}
