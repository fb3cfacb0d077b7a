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
from .corpus import (STDLIB, STDLIB_NAMES, check_corpus_size, list_text_files, read_text_file,
                     stdlib_files, stdlib_names)

__all__ = ["load_samples", "BucketIterator", "padding_optimal_keys", "token_batch_sizes",
           "SAMPLE_UNITS"]

SAMPLE_UNITS = ("line", "paragraph", "file")


def load_samples(spec, per="line", max_chars=None):
    """Read independent samples: one per non-empty line, per paragraph
    (text between blank lines, stripped), or per file.  ``spec`` is a file,
    folder or glob, ``"stdlib"`` (the standard-library sources) or
    ``"stdlib-names"`` (its function names, one sample each).  With
    ``max_chars``, files stop being read once that many characters are in."""
    if per not in SAMPLE_UNITS:
        raise MXGenError("samples are split per %s, not %r" % (", ".join(SAMPLE_UNITS), per))
    if spec == STDLIB_NAMES:
        return stdlib_names()
    samples = []
    paths, errors = (stdlib_files(), "skip") if spec == STDLIB else (list_text_files(spec),
                                                                      "strict")
    total, read = 0, []
    for path in paths:
        if max_chars is not None and total >= max_chars:
            break
        read.append(path)
        check_corpus_size(spec, read)          # whole files: samples are never cut
        text = read_text_file(path, errors=errors)
        if text is None:
            continue
        total += len(text)
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


def padding_optimal_keys(lengths, num_buckets):
    """Bucket lengths (at most ``num_buckets``) that minimise the total
    padding of ``lengths``: each sample is padded to the smallest key that
    holds it.  Exact, by dynamic programming over the distinct lengths
    (quantile bounds leave a long tail in the last bucket: with 8 buckets
    on the standard library's function names they pad 17% of positions,
    these 8%)."""
    values, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    m, buckets = len(values), min(num_buckets, len(values))
    total_count = np.concatenate([[0], np.cumsum(counts)])            # prefix sums
    total_len = np.concatenate([[0], np.cumsum(counts * values)])

    def cost(first, last):      # samples of values[first..last] padded to values[last]
        n = total_count[last + 1] - total_count[first]
        return values[last] * n - (total_len[last + 1] - total_len[first])

    best = np.array([cost(0, j) for j in range(m)], dtype=np.float64)   # one bucket
    choice = [np.zeros(m, dtype=np.int64)]
    for _ in range(1, buckets):
        new, arg = best.copy(), np.zeros(m, dtype=np.int64)
        for j in range(1, m):
            starts = np.arange(1, j + 1)                  # this bucket is values[i..j]
            options = best[starts - 1] + cost(starts, j)
            k = int(np.argmin(options))
            if options[k] < new[j]:
                new[j], arg[j] = options[k], starts[k]
        best = new
        choice.append(arg)
    keys, j = [], m - 1
    for arg in reversed(choice):
        if j < 0:
            break
        keys.append(int(values[j]))
        j = int(arg[j]) - 1 if arg[j] > 0 else -1
    return sorted(set(keys))


def token_batch_sizes(bucket_keys, tokens, multiple=1):
    """Samples per batch for each bucket so that a batch holds about
    ``tokens`` positions (short samples come in bigger batches), each a
    multiple of ``multiple`` (devices x workers) and at least one multiple."""
    return [max(multiple, (tokens // key) // multiple * multiple) for key in bucket_keys]


class BucketIterator:
    """Batches of similar-length samples, padded, with a loss mask.

    Parameters
    ----------
    samples : list of 1-D int arrays
        Encoded samples without markers.
    eos_id : int
        End-of-sample id; it also pads.
    batch_size : int or list of int
        Samples per batch, or one number per bucket (see
        :func:`token_batch_sizes`).
    num_buckets : int
        Bucket lengths that minimise padding (:func:`padding_optimal_keys`).
        Ignored if ``bucket_keys`` is given.
    bucket_keys : list of int, optional
        Explicit maximum lengths (inputs, i.e. ``len(sample) + 1``).
    shuffle : bool
    seed : int
        Shuffling is seeded per epoch (``seed + epoch``) so it is reproducible
        and resumable.
    pad_last : bool
        Give every batch of a bucket that bucket's batch size, so each bucket
        has ONE shape (one cached graph): the samples left over after a
        bucket's full batches move up into the next (longer) bucket, and only
        the epoch's very last batch is filled up with empty columns (mask 0).
        Without it, each bucket's last batch is simply smaller.

    Each batch is ``(data, target, mask)``, all ``(T, N)`` (TNC), T = the
    bucket's key; mask is float32 1 for real positions, 0 for padding.
    """

    def __init__(self, samples, eos_id, batch_size, num_buckets=10, bucket_keys=None,
                 shuffle=True, seed=0, pad_last=False):
        if not samples:
            raise MXGenError("bucket iterator needs at least one sample")
        self.samples = [np.asarray(s, dtype=np.int32) for s in samples]
        self.eos_id = int(eos_id)
        self.shuffle, self.seed, self.pad_last = shuffle, seed, pad_last
        lengths = np.array([len(s) + 1 for s in self.samples])
        if bucket_keys is None:
            bucket_keys = padding_optimal_keys(lengths, num_buckets)
        self.bucket_keys = sorted(int(k) for k in bucket_keys)
        sizes = list(batch_size) if isinstance(batch_size, (list, tuple)) else \
            [batch_size] * len(self.bucket_keys)
        if len(sizes) != len(self.bucket_keys) or min(sizes) < 1:
            raise MXGenError("batch sizes must be >= 1, one per bucket (%d buckets), got %r"
                             % (len(self.bucket_keys), batch_size))
        self.batch_sizes = [int(b) for b in sizes]
        if lengths.max() > self.bucket_keys[-1]:
            raise MXGenError("longest sample (%d steps) exceeds the largest bucket (%d)"
                             % (lengths.max(), self.bucket_keys[-1]))
        which = np.searchsorted(self.bucket_keys, lengths)   # smallest key >= length
        self.buckets = [np.flatnonzero(which == b) for b in range(len(self.bucket_keys))]
        self._lengths = lengths

    @property
    def batch_size(self):
        return max(self.batch_sizes)

    def _plan(self, members_of):
        """``[(bucket, members)]`` in bucket order; ``members_of(b)`` gives a
        bucket's own samples (an array or just a count)."""
        batches, carry = [], np.zeros(0, dtype=np.int64)
        for b, size in enumerate(self.batch_sizes):
            own = members_of(b)
            if not self.pad_last:
                batches.extend((b, own[i:i + size]) for i in range(0, len(own), size))
                continue
            members = np.concatenate([carry, own]).astype(np.int64)
            full = len(members) // size * size
            batches.extend((b, members[i:i + size]) for i in range(0, full, size))
            carry = members[full:]
        if len(carry):
            batches.append((len(self.batch_sizes) - 1, carry))
        return batches

    def _batches(self, epoch):
        rng = np.random.RandomState(self.seed + epoch)
        batches = self._plan(lambda b: rng.permutation(self.buckets[b]) if self.shuffle
                             else self.buckets[b])
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _shapes(self):
        """``[(key, batch size)]`` of every batch of an epoch (any epoch)."""
        return [(self.bucket_keys[b], self.batch_sizes[b] if self.pad_last else len(m))
                for b, m in self._plan(lambda b: self.buckets[b])]

    def __len__(self):
        return len(self._shapes())

    def epoch(self, epoch=0, start=0):
        """Yield the batches of one epoch, from batch index ``start`` on."""
        for b, members in self._batches(epoch)[start:]:
            yield self._make(b, members)

    def __iter__(self):
        return self.epoch(0)

    def _make(self, bucket, members):
        key = self.bucket_keys[bucket]
        num = self.batch_sizes[bucket] if self.pad_last else len(members)
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
        """Buckets (key, own samples, batch size, batches) and padding: the
        share of computed positions that are not real tokens (filler
        columns included), as a dict."""
        shapes = self._shapes()
        rows = [{"key": key, "samples": int(len(members)), "batch_size": size,
                 "batches": sum(1 for s in shapes if s[0] == key)}
                for key, members, size in zip(self.bucket_keys, self.buckets, self.batch_sizes)]
        real = int(self._lengths.sum())
        computed = sum(key * size for key, size in shapes)
        return {"buckets": rows, "num_samples": len(self.samples),
                "real_tokens": real, "padded_tokens": computed,
                "padding_ratio": (computed - real) / computed if computed else 0.0}
