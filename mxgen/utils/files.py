"""Writing outputs without ever losing a file the user owns.

Every command that writes a named output (an image, a grid, an export, a
metrics file) goes through :func:`check_outputs` before any long work
starts, and writes through :func:`atomic_output`:

* an output is never one of the command's inputs (compared as files, so a
  path spelled differently or a hard link is caught too);
* an existing output is replaced only when the user asked (``force``), and
  only by a rename of a complete file: a failure half-way leaves the old
  file as it was and no temporary file behind;
* a path that is a folder, or whose extension no image writer knows, is
  refused up front, not after minutes of work.
"""
import contextlib
import os
import tempfile

from ..errors import MXGenError

__all__ = ["check_outputs", "atomic_output", "same_file", "image_extensions",
           "check_image_extension"]


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_outputs(outputs, inputs=None, force=False):
    """Refuse, in one line, any output that is an input, a folder, or an
    existing file without ``force``.

    ``outputs`` and ``inputs``: ``{path: what}`` (``what`` names the flag in
    messages, e.g. ``"--out"``); ``None`` paths are skipped.
    """
    for path, what in outputs.items():
        if path is None:
            continue
        for source, source_what in (inputs or {}).items():
            if source is not None and same_file(path, source):
                raise MXGenError("%s %s is also the input %s; write the result to another file"
                                 % (what, path, source_what))
        if os.path.isdir(path):
            raise MXGenError("%s %s is a folder; give a file name" % (what, path))
        if os.path.lexists(path) and not force:
            raise MXGenError("%s %s exists; pass --force to replace it" % (what, path))
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise MXGenError("%s %s: %s is a file, not a folder" % (what, path, parent))


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path`` (same extension, so image
    writers pick the format); on success it is fsynced and renamed over
    ``path``, on any failure it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".%s." % base,
                               suffix=".tmp" + os.path.splitext(base)[1])
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def image_extensions():
    """File extensions Pillow can write (lower case, with the dot)."""
    from PIL import Image
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def check_image_extension(path, what="--out"):
    """Refuse a folder, or a name whose extension no image writer knows."""
    if os.path.isdir(path):
        raise MXGenError("%s %s is a folder; give a file name" % (what, path))
    ext = os.path.splitext(path)[1].lower()
    if ext not in image_extensions():
        raise MXGenError("%s %s: %s is not an image format mxgen can write; use .png or .jpg"
                         % (what, path, "no extension" if not ext else "'%s'" % ext))
