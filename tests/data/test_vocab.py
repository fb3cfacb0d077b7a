import pytest

from mxgen.data.vocab import Vocab
from mxgen.errors import MXGenError


def test_sorted_roundtrip_and_json(tmp_path, nietzsche):
    text = nietzsche[:5000]
    vocab = Vocab.from_text(text)
    assert vocab.chars == sorted(set(text))
    assert vocab.decode(vocab.encode(text)) == text
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert path.read_text(encoding="utf-8").startswith("{")  # JSON, not pickle
    assert Vocab.load(path) == vocab


def test_unknown_characters_are_listed():
    vocab = Vocab.from_text("abc")
    with pytest.raises(MXGenError) as err:
        vocab.encode("abxyzx")
    assert "'x'" in str(err.value) and "'y'" in str(err.value) and "'z'" in str(err.value)


def test_unknown_token_maps_instead_of_raising():
    vocab = Vocab.from_text("abc", unk=Vocab.UNK)
    ids = vocab.encode("aqc")
    assert ids[1] == vocab.index[Vocab.UNK]


def test_bad_vocab_file(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text("{not json")
    with pytest.raises(MXGenError, match="not valid JSON"):
        Vocab.load(bad)
