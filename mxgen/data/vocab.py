"""Character vocabulary: sorted characters <-> integer ids, stored as JSON."""
import json

import numpy as np

from ..errors import MXGenError

__all__ = ["Vocab"]


class Vocab:
    """A character vocabulary.

    Characters are sorted by code point so that the same text always gives the
    same ids.  Optional special tokens (``eos`` for bucketed samples, ``unk``
    for unknown characters) are single reserved characters from the Unicode
    private-use area, so a vocabulary stays a plain list of characters.

    Parameters
    ----------
    chars : iterable of str
        Single characters; duplicates are removed.
    eos : str or None
        End-of-sample marker character, included in the vocabulary.
    unk : str or None
        Unknown-character marker; when set, :meth:`encode` maps characters
        outside the vocabulary to it instead of raising.
    """

    EOS = "\ue000"
    UNK = "\ue001"

    def __init__(self, chars, eos=None, unk=None):
        chars = set(chars)
        for special in (eos, unk):
            if special is not None:
                chars.add(special)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise MXGenError("vocabulary entries must be single characters, got %r" % bad[:5])
        self.chars = sorted(chars)
        self.eos = eos
        self.unk = unk
        self.index = {c: i for i, c in enumerate(self.chars)}
        self._shown = None   # decode's lookup table, made on first use

    @classmethod
    def from_text(cls, text, eos=None, unk=None):
        return cls(set(text), eos=eos, unk=unk)

    @classmethod
    def build(cls, text, min_count=1, eos=None):
        """The characters of ``text``; with ``min_count`` > 1 the rarer ones
        map to an unknown token.  ``eos``: an end-of-sample mark to include."""
        if not min_count or min_count <= 1:
            return cls.from_text(text, eos=eos)
        counts = {}
        for ch in text:
            counts[ch] = counts.get(ch, 0) + 1
        return cls([c for c, n in counts.items() if n >= min_count], eos=eos, unk=cls.UNK)

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return (isinstance(other, Vocab) and self.chars == other.chars
                and self.eos == other.eos and self.unk == other.unk)

    def __repr__(self):
        return "Vocab(%d chars)" % len(self)

    @property
    def eos_id(self):
        return None if self.eos is None else self.index[self.eos]

    def missing(self, text):
        """Characters of ``text`` that are not in the vocabulary (sorted)."""
        return sorted(set(text) - set(self.index))

    def encode(self, text):
        """Map a string to an int32 array of ids.

        Raises MXGenError listing every unknown character, unless the
        vocabulary has an ``unk`` token.
        """
        missing = self.missing(text)
        if missing:
            if self.unk is None:
                raise MXGenError("characters not in the vocabulary: %s"
                                 % ", ".join(repr(c) for c in missing))
            unk_id = self.index[self.unk]
            return np.array([self.index.get(c, unk_id) for c in text], dtype=np.int32)
        return np.fromiter((self.index[c] for c in text), dtype=np.int32, count=len(text))

    def decode(self, ids):
        """Ids to text; the unknown token shows as U+FFFD, the end marker as a newline."""
        if self._shown is None:   # one lookup per id (vocabularies do not change)
            shown = {self.unk: "\ufffd", self.eos: "\n"}
            self._shown = np.array([shown.get(c, c) for c in self.chars], dtype=object)
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int64)
        return "".join(self._shown[ids.ravel()])

    # -- persistence (JSON, never pickle) ----------------------------------
    def to_dict(self):
        return {"chars": self.chars, "eos": self.eos, "unk": self.unk}

    @classmethod
    def from_dict(cls, data):
        try:
            return cls(data["chars"], eos=data.get("eos"), unk=data.get("unk"))
        except (KeyError, TypeError) as err:
            raise MXGenError("malformed vocabulary: %s" % err) from None

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=True)

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except FileNotFoundError:
            raise MXGenError("vocabulary file not found: %s" % path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MXGenError("vocabulary file %s is not valid JSON: %s" % (path, err)) from None
