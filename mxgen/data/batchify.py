"""Turning a long id sequence into training batches.

* :class:`BPTTBatches` - truncated-BPTT streams in TNC layout, as in the
  classic language-model recipe: the corpus is cut into ``batch_size``
  parallel streams and walked ``seq_len`` steps at a time, so the hidden
  state of batch ``i`` is the right starting state for batch ``i + 1``.
* :class:`WindowDataset` - the many-to-one dataset: every window of
  ``num_inputs`` characters predicts the next one.
"""
import numpy as np

from ..errors import MXGenError

__all__ = ["BPTTBatches", "WindowDataset"]


class BPTTBatches:
    """Sequential (data, target) batches for truncated BPTT.

    Parameters
    ----------
    ids : 1-D int array
        The encoded corpus.
    batch_size : int
        Number of parallel streams (N).
    seq_len : int
        Steps per batch (T).

    Batch ``i`` is ``(data, target)``, both ``(seq_len, batch_size)`` int32
    (TNC without C), where ``target[t, n] == data[t + 1, n]`` within the stream.
    A trailing remainder shorter than ``seq_len`` is dropped so every batch has
    the same shape (a hybridized graph is then built only once).
    """

    def __init__(self, ids, batch_size, seq_len, name="corpus"):
        if batch_size < 1 or seq_len < 1:
            raise MXGenError("batch size and sequence length must be >= 1, got %d and %d"
                             % (batch_size, seq_len))
        ids = np.asarray(ids, dtype=np.int32)
        stream_len = len(ids) // batch_size
        if stream_len < seq_len + 1:
            raise MXGenError(
                "%s has %d characters, fewer than one batch needs: batch_size * (seq_len + 1)"
                " = %d * %d = %d; use a smaller --batch-size or --seq-len"
                % (name, len(ids), batch_size, seq_len + 1, batch_size * (seq_len + 1)))
        self.batch_size, self.seq_len = batch_size, seq_len
        # (stream_len, N): column n is the n-th contiguous slice of the corpus.
        self.streams = ids[:stream_len * batch_size].reshape(batch_size, stream_len).T.copy()

    def __len__(self):
        return (self.streams.shape[0] - 1) // self.seq_len

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.seq_len
        data = self.streams[start:start + self.seq_len]              # (T, N)
        target = self.streams[start + 1:start + 1 + self.seq_len]    # (T, N)
        return data, target

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def num_tokens(self):
        return len(self) * self.seq_len * self.batch_size


class WindowDataset:
    """Every ``num_inputs``-character window and the character that follows.

    The tutorial's 3-character many-to-one task, for any window length.
    Item ``i`` is ``(ids[i:i + num_inputs], ids[i + num_inputs])``.
    """

    def __init__(self, ids, num_inputs):
        if num_inputs < 1:
            raise MXGenError("window length must be >= 1, got %d" % num_inputs)
        ids = np.asarray(ids, dtype=np.int32)
        if len(ids) <= num_inputs:
            raise MXGenError("text of %d characters is too short for windows of %d"
                             % (len(ids), num_inputs))
        self.ids, self.num_inputs = ids, num_inputs

    def __len__(self):
        return len(self.ids) - self.num_inputs

    def __getitem__(self, i):
        return self.ids[i:i + self.num_inputs], self.ids[i + self.num_inputs]

    def arrays(self):
        """All windows at once: inputs ``(num, num_inputs)``, targets ``(num,)``."""
        view = np.lib.stride_tricks.sliding_window_view(self.ids[:-1], self.num_inputs)
        return view.copy(), self.ids[self.num_inputs:].copy()
