import pytest

from mxgen.data.corpus import load_text, split_train_val, stdlib_files
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
