"""Loading text corpora: a file, a directory, a glob, or the embedded default.

Every loader checks its input and raises :class:`~mxgen.MXGenError` naming the
file and what is wrong (missing, empty, binary, undecodable at byte N).
"""
import codecs
import glob
import os
import re
import sysconfig

from ..errors import MXGenError

__all__ = ["load_text", "read_text_file", "list_text_files", "stdlib_files", "stdlib_names",
           "split_train_val", "check_corpus_size", "max_corpus_bytes", "STDLIB",
           "STDLIB_NAMES"]

# The name that selects the embedded default corpus on the command line.
STDLIB = "stdlib"
# ... and the embedded list corpus: the standard library's function names,
# one per line (samples to train on with --samples lines; no download).
STDLIB_NAMES = "stdlib-names"

# Parts of the standard library left out of the default corpus: the test
# suite (huge and repetitive), and the IDLE / lib2to3 sources, which are
# not typical library code.
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib",
                     "lib2to3", "__pycache__"}

_BINARY_SNIFF_BYTES = 8192


def max_corpus_bytes():
    """The largest corpus read whole (bytes): 1 GiB, or ``MXGEN_MAX_CORPUS_BYTES``.

    A character corpus is held in memory as text and as ids (several bytes
    per character), so a larger one is refused with a clear error instead of
    failing later with a MemoryError; ``--max-chars`` reads only the
    beginning of any corpus, whatever its size."""
    value = os.environ.get("MXGEN_MAX_CORPUS_BYTES")
    if value:
        try:
            return int(value)
        except ValueError:
            raise MXGenError("MXGEN_MAX_CORPUS_BYTES must be a number of bytes, got %r" % value) \
                from None
    return 1 << 30


def check_corpus_size(spec, paths):
    """Refuse a corpus whose files add up to more than :func:`max_corpus_bytes`."""
    limit, total = max_corpus_bytes(), 0
    for path in paths:
        try:
            total += os.path.getsize(path)
        except OSError:
            continue                  # reported by the reader, with its reason
        if total > limit:
            raise MXGenError("corpus %s is larger than %d bytes (%d bytes up to %s), the limit"
                             " of what is read whole (MXGEN_MAX_CORPUS_BYTES); pass --max-chars"
                             " N to train on its first N characters"
                             % (spec, limit, total, path))


def read_text_file(path, errors="strict", max_chars=None):
    """Read one UTF-8 text file.

    Parameters
    ----------
    path : str
    errors : {'strict', 'skip'}
        'strict' raises on undecodable bytes, naming the byte offset;
        'skip' returns None for such a file.
    max_chars : int or None
        Read only what the first ``max_chars`` characters need (at most 4
        bytes each), never the whole of a large file.
    """
    try:
        with open(path, "rb") as f:
            if max_chars is None:
                raw, complete = f.read(), True
            else:
                raw = f.read(4 * max_chars)
                complete = len(raw) < 4 * max_chars or not f.read(1)
    except FileNotFoundError:
        raise MXGenError("corpus file not found: %s" % path) from None
    except IsADirectoryError:
        raise MXGenError("expected a file but got a directory: %s" % path) from None
    except OSError as err:
        raise MXGenError("cannot read corpus file %s: %s" % (path, err.strerror)) from None
    if b"\x00" in raw[:_BINARY_SNIFF_BYTES]:
        if errors == "skip":
            return None
        raise MXGenError("%s looks like a binary file (NUL byte at offset %d), not text"
                         % (path, raw.index(b"\x00")))
    try:
        # a cut read may end inside a character: the decoder keeps those bytes back
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=complete)
    except UnicodeDecodeError as err:
        if errors == "skip":
            return None
        line = raw.count(b"\n", 0, err.start) + 1
        raise MXGenError("%s: undecodable byte 0x%02x at byte offset %d (line %d): not UTF-8 text"
                         % (path, raw[err.start], err.start, line)) from None
    return text if max_chars is None else text[:max_chars]


def list_text_files(spec):
    """Resolve a corpus spec (file, directory, or glob) to sorted file paths."""
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        paths = []
        for root, dirs, files in os.walk(spec):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            paths.extend(os.path.join(root, name) for name in sorted(files)
                         if not name.startswith("."))
        if not paths:
            raise MXGenError("corpus directory %s contains no files" % spec)
        return paths
    if glob.has_magic(spec):
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not paths:
            raise MXGenError("corpus pattern %s matches no files" % spec)
        return paths
    raise MXGenError("corpus not found: %s (give a file, a directory, a glob, '%s' or '%s')"
                     % (spec, STDLIB, STDLIB_NAMES))


def stdlib_files():
    """The running interpreter's standard-library ``.py`` files, sorted."""
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _STDLIB_SKIP_DIRS)
        paths.extend(os.path.join(base, f) for f in sorted(files) if f.endswith(".py"))
    if not paths:
        raise MXGenError("no standard-library sources found under %s" % root)
    return paths


def stdlib_names():
    """The distinct names of the functions and methods defined in the
    standard-library sources (``def name(``), without dunder names, sorted:
    about 7,400 short samples on CPython 3.11, such as ``parse_headers``."""
    found = set()
    for path in stdlib_files():
        text = read_text_file(path, errors="skip")
        if text:
            found.update(_DEF_NAME.findall(text))
    names = sorted(n for n in found if len(n) > 1 and not n.startswith("__"))
    if not names:
        raise MXGenError("no function names found in the standard-library sources")
    return names


_DEF_NAME = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(", re.M)


def load_text(spec, max_chars=None):
    """Load a corpus as one string.

    Parameters
    ----------
    spec : str
        A file, a directory (read recursively), a glob, or ``"stdlib"`` for the
        embedded default: this interpreter's own standard-library sources
        (about 11 M characters on CPython 3.11; files that are not UTF-8 are
        skipped).
    max_chars : int or None
        Keep only the first ``max_chars`` characters.

    Returns
    -------
    str
        The files' texts joined in sorted path order.
    """
    if spec == STDLIB_NAMES:
        text = "".join(name + "\n" for name in stdlib_names())
        return text[:max_chars] if max_chars is not None else text
    if spec == STDLIB:
        paths, errors = stdlib_files(), "skip"
    else:
        paths, errors = list_text_files(spec), "strict"
    if max_chars is None:
        check_corpus_size(spec, paths)
    parts, total = [], 0
    for path in paths:
        text = read_text_file(path, errors=errors,
                              max_chars=None if max_chars is None else max_chars - total)
        if text is None:
            continue
        parts.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    text = "".join(parts)
    if not text:
        raise MXGenError("corpus %s is empty" % spec)
    return text


def split_train_val(text, val_fraction):
    """Split off the last ``val_fraction`` of the text for validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise MXGenError("validation fraction must be in [0, 1), got %r" % val_fraction)
    cut = len(text) - int(round(len(text) * val_fraction))
    return text[:cut], text[cut:]
