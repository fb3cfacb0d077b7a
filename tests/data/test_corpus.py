import pytest

from mxgen.data.corpus import load_text, read_text_file, split_train_val, stdlib_files
from mxgen.errors import MXGenError


def test_file_directory_and_glob(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text("beta\n", encoding="utf-8")
    assert load_text(str(tmp_path / "a.txt")) == "alpha\n"
    assert load_text(str(tmp_path)) == "alpha\nbeta\n"           # recursive, sorted
    assert load_text(str(tmp_path / "**" / "*.txt")) == "alpha\nbeta\n"


def test_missing_and_empty(tmp_path):
    with pytest.raises(MXGenError, match="not found"):
        load_text(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(MXGenError, match="empty"):
        load_text(str(tmp_path / "empty.txt"))


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(MXGenError, match="blob.bin looks like a binary file"):
        load_text(str(path))


def test_undecodable_byte_reports_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"first line\ncaf\xe9\n")
    with pytest.raises(MXGenError) as err:
        load_text(str(path))
    msg = str(err.value)
    assert "latin1.txt" in msg and "byte offset 14" in msg and "line 2" in msg


def test_stdlib_default_needs_no_download():
    assert len(stdlib_files()) > 100
    text = load_text("stdlib", max_chars=100000)
    assert len(text) == 100000 and "def " in text


def test_split_keeps_the_tail_for_validation(nietzsche):
    train, val = split_train_val(nietzsche, 0.1)
    assert train + val == nietzsche
    assert abs(len(val) - 0.1 * len(nietzsche)) <= 1


def test_a_corpus_above_the_limit_is_refused_unless_only_its_start_is_read(tmp_path,
                                                                          monkeypatch):
    big = tmp_path / "big.txt"
    big.write_text("abcdefghij\n" * 1000)          # 11,000 bytes
    monkeypatch.setenv("MXGEN_MAX_CORPUS_BYTES", "5000")
    with pytest.raises(MXGenError, match="larger than 5000 bytes.*--max-chars"):
        load_text(str(big))
    # --max-chars reads only the beginning: never the whole file
    reads = []
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _Reads(f, reads) if str(path) == str(big) else f
    monkeypatch.setattr("builtins.open", counting_open)
    assert load_text(str(big), max_chars=100) == ("abcdefghij\n" * 10)[:100]
    assert sum(reads) <= 4 * 100 + 1


class _Reads:
    """A file wrapper counting the bytes read."""

    def __init__(self, f, counts):
        self.f, self.counts = f, counts

    def read(self, n=-1):
        data = self.f.read(n)
        self.counts.append(len(data))
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_cut_read_never_splits_a_character(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("\u00e9\u00e8\u4e2d\u6587" * 50, encoding="utf-8")
    text = read_text_file(str(path), max_chars=7)
    assert text == ("\u00e9\u00e8\u4e2d\u6587" * 2)[:7]
