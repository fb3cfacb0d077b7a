import numpy as np
import pytest

from mxgen.data.batchify import BPTTBatches, WindowDataset
from mxgen.data.bucket import BucketIterator, load_samples
from mxgen.data.vocab import Vocab
from mxgen.errors import MXGenError


def test_bptt_streams_are_contiguous_and_shifted(nietzsche):
    vocab = Vocab.from_text(nietzsche)
    ids = vocab.encode(nietzsche[:10000])
    batches = BPTTBatches(ids, batch_size=4, seq_len=25)
    stream_len = len(ids) // 4
    assert len(batches) == (stream_len - 1) // 25
    data, target = batches[0]
    assert data.shape == (25, 4) and target.shape == (25, 4)       # (T, N)
    np.testing.assert_array_equal(target[:-1], data[1:])
    # column n is the n-th contiguous quarter of the corpus
    np.testing.assert_array_equal(data[:, 2], ids[2 * stream_len:2 * stream_len + 25])
    # batch i+1 continues batch i in every stream
    np.testing.assert_array_equal(batches[1][0][0], target[-1])


def test_bptt_too_short_names_the_sizes():
    with pytest.raises(MXGenError, match=r"batch_size \* \(seq_len \+ 1\)"):
        BPTTBatches(np.arange(100), batch_size=8, seq_len=20)


def test_window_dataset(nietzsche):
    vocab = Vocab.from_text(nietzsche)
    ids = vocab.encode(nietzsche[:500])
    ds = WindowDataset(ids, 3)
    x, y = ds[10]
    np.testing.assert_array_equal(x, ids[10:13])
    assert y == ids[13]
    xs, ys = ds.arrays()
    assert xs.shape == (len(ds), 3) and ys.shape == (len(ds),)
    np.testing.assert_array_equal(xs[10], x)


def test_bucket_iterator_on_real_lines(nietzsche_path):
    lines = load_samples(nietzsche_path, per="line")[:2000]
    vocab = Vocab.from_text("".join(lines), eos=Vocab.EOS)
    samples = [vocab.encode(s) for s in lines]
    it = BucketIterator(samples, vocab.eos_id, batch_size=16, num_buckets=5, seed=3)
    seen, real = 0, 0
    for data, target, mask in it.epoch(0):
        assert data.shape == target.shape == mask.shape
        assert data.shape[0] in it.bucket_keys
        assert (data[0] == vocab.eos_id).all()                     # every sample starts at eos
        for n in range(data.shape[1]):
            length = int(mask[:, n].sum())
            assert target[length - 1, n] == vocab.eos_id           # and ends with eos
            np.testing.assert_array_equal(target[:length - 1, n], data[1:length, n])
        seen += data.shape[1]
        real += int(mask.sum())
    assert seen == len(samples)
    stats = it.stats()
    assert stats["real_tokens"] == real == sum(len(s) + 1 for s in samples)
    assert 0 < stats["padding_ratio"] < 0.5
    assert sum(b["samples"] for b in stats["buckets"]) == len(samples)
    # same seed and epoch -> same order; a different epoch reshuffles
    first = [d.tobytes() for d, _, _ in it.epoch(1)]
    assert first == [d.tobytes() for d, _, _ in it.epoch(1)]
    assert first != [d.tobytes() for d, _, _ in it.epoch(2)]


def test_bucketing_pads_less_than_one_bucket(nietzsche_path):
    lines = load_samples(nietzsche_path, per="line")[:2000]
    vocab = Vocab.from_text("".join(lines), eos=Vocab.EOS)
    samples = [vocab.encode(s) for s in lines]
    one = BucketIterator(samples, vocab.eos_id, 16, num_buckets=1).stats()["padding_ratio"]
    many = BucketIterator(samples, vocab.eos_id, 16, num_buckets=8).stats()["padding_ratio"]
    assert many < one


def test_padding_optimal_keys_match_a_brute_force_search():
    import itertools

    from mxgen.data.bucket import padding_optimal_keys

    def padding(lengths, keys):
        keys = np.array(sorted(keys))
        return int((keys[np.searchsorted(keys, lengths)] - lengths).sum())

    rng = np.random.RandomState(0)
    for _ in range(100):
        lengths = rng.randint(1, 15, rng.randint(1, 25))
        buckets = rng.randint(1, 5)
        keys = padding_optimal_keys(lengths, buckets)
        values = sorted(set(lengths))
        best = min(padding(lengths, list(c) + [values[-1]]) for r in range(buckets)
                   for c in itertools.combinations(values[:-1], r))
        assert len(keys) <= buckets and keys[-1] == lengths.max()
        assert padding(lengths, keys) == best, (lengths, buckets, keys)
