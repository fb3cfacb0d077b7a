"""Images: decoding any file safely, image folders for training, writing grids.

Every image is decoded by :func:`open_image`, which

* refuses, before decoding, an image above Pillow's decompression-bomb
  limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 pixels by default);
* brings 16-bit images (PIL modes ``I;16*``, and ``I`` from a PNG) and
  float images (mode ``F``, values in [0, 1]) to 8 bits by their real range
  instead of clipping them (which made them all white or all black), and
  refuses a float image outside [0, 1] or 32-bit integer pixels of unknown
  range;
* composites transparency (RGBA, LA, palette with transparency) on
  ``background``, white by default (right for emoji and icons).

:class:`ImageFolder` decodes a folder once (in worker processes when there
are many), converts each image to the model's channels, resizes so its
shorter side matches the model size and centre-crops, and keeps uint8
``(N, C, S, S)``.  Images smaller than the model size are upscaled with one
warning that counts them; files that fail to decode (or are refused) are
skipped and named in one warning; a folder with no usable image is an error;
a decoding process that dies (e.g. killed for memory) ends the run with an
error instead of a hang.

``shapes`` is the embedded default data set: procedurally drawn circles,
squares, triangles and diamonds in random colours, positions and sizes on a
light background (deterministic for a seed; no download).

Writers (:func:`save_grid`, :func:`save_image`, :func:`save_side_by_side`)
write a complete file under a temporary name and rename it into place.
"""
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..errors import MXGenError, one_line
from ..utils.files import atomic_output

__all__ = ["IMAGE_EXTENSIONS", "list_images", "open_image", "load_image", "read_image",
           "ImageFolder", "draw_shapes", "SHAPES", "to_float", "save_grid", "make_grid",
           "save_image", "save_side_by_side", "WHITE"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".bmp", ".gif")
SHAPES = "shapes"
WHITE = (255, 255, 255)


def _eight_bit(img, path, what):
    """16-bit and float images -> mode L by their real range; others as they are."""
    from PIL import Image
    mode = img.mode
    if mode.startswith("I;16") or (mode == "I" and img.format == "PNG"):
        # PNG has no 32-bit samples: mode I from a PNG is 16-bit data
        pixels = np.asarray(img).astype(np.float64) / 257.0
    elif mode == "F":
        pixels = np.asarray(img, dtype=np.float64)
        low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
        if not (np.isfinite(pixels).all() and 0.0 <= low and high <= 1.0):
            raise MXGenError("%s %s has float pixels in [%g, %g]; mxgen reads float images with"
                             " values in [0, 1]: convert it to 8 or 16 bits" % (what, path, low,
                                                                               high))
        pixels = pixels * 255.0
    elif mode == "I":
        raise MXGenError("%s %s has 32-bit integer pixels (PIL mode I) of unknown range;"
                         " convert it to an 8- or 16-bit image" % (what, path))
    else:
        return img
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")


def open_image(path, what="image", background=WHITE):
    """Decode ``path`` to a PIL image in mode ``RGB`` or ``L`` (8 bits), as
    the module docstring describes; MXGenError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError
    if not os.path.exists(path):
        raise MXGenError("%s not found: %s" % (what, path))
    if os.path.isdir(path):
        raise MXGenError("%s %s is a folder, not an image file" % (what, path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MXGenError("%s %s is refused: %s" % (what, path, one_line(err, 160))) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise MXGenError("%s %s cannot be decoded as an image (%s)"
                         % (what, path, one_line(err, 120))) from None
    with img:
        width, height = img.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:      # before decoding a single pixel
            raise MXGenError("%s %s is %dx%d = %d pixels, above the limit of %d (Pillow's"
                             " decompression-bomb guard); resize it first"
                             % (what, path, width, height, width * height, limit))
        try:
            img.load()
            img = _eight_bit(img, path, what)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and
                                                     "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.new("RGBA", rgba.size, tuple(background) + (255,))
                img.alpha_composite(rgba)
            return img.convert("L") if img.mode in ("L", "1") else img.convert("RGB")
        except (OSError, ValueError, SyntaxError) as err:
            raise MXGenError("%s %s cannot be decoded as an image (%s)"
                             % (what, path, one_line(err, 120))) from None


def read_image(path, size=None, shorter=None, what="image", multiple=1):
    """Decode ``path`` to ``(1, 3, H, W)`` float32 RGB in [0, 1].

    ``size``: the longer side becomes ``size``; ``shorter``: the shorter
    side becomes ``shorter``; both keep the aspect ratio, and the sides are
    rounded down to a ``multiple``.  Returns ``(array, (width, height) of
    the file)``."""
    from PIL import Image
    img = open_image(path, what).convert("RGB")
    width, height = original = img.size
    scale = 1.0
    if size:
        scale = size / max(width, height)
    elif shorter:
        scale = shorter / min(width, height)
    new = (max(multiple, int(round(width * scale)) // multiple * multiple),
           max(multiple, int(round(height * scale)) // multiple * multiple))
    if new != img.size:
        img = img.resize(new, Image.BICUBIC if scale > 1 else Image.LANCZOS)
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return arr, original


def list_images(root):
    if not os.path.exists(root):
        raise MXGenError("image folder not found: %s" % root)
    if not os.path.isdir(root):
        raise MXGenError("expected a folder of images, got a file: %s" % root)
    paths = []
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(os.path.join(base, f) for f in sorted(files)
                     if f.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise MXGenError("image folder %s contains no image files (%s)"
                         % (root, ", ".join(IMAGE_EXTENSIONS)))
    return paths


def load_image(path, size, channels, background=WHITE):
    """Decode one file to uint8 ``(channels, size, size)``: shorter side
    resized to ``size``, centre crop.  Returns ``(array, upscaled)``; raises
    MXGenError if the file is refused or undecodable."""
    from PIL import Image
    img = open_image(path, background=background).convert("RGB" if channels == 3 else "L")
    width, height = img.size
    upscaled = min(width, height) < size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new_size != img.size:
        img = img.resize(new_size, Image.BICUBIC if upscaled else Image.LANCZOS)
    left = (img.size[0] - size) // 2
    top = (img.size[1] - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr), upscaled


def _load_one(job):
    path, size, channels, background = job
    try:
        arr, upscaled = load_image(path, size, channels, background)
        return path, arr, upscaled, None
    except MXGenError as err:
        return path, None, False, str(err)
    except Exception as err:  # PIL raises many types for bad files
        return path, None, False, "%s: %s" % (type(err).__name__, one_line(err, 160))


def _decode_all(jobs, num_workers, root):
    """``_load_one`` over ``jobs``, in ``num_workers`` processes when there
    are many; a process that dies is an error, never a hang."""
    if num_workers <= 0 or len(jobs) <= 256:
        return [_load_one(j) for j in jobs]
    try:
        with ProcessPoolExecutor(num_workers) as pool:
            return list(pool.map(_load_one, jobs, chunksize=64))
    except BrokenProcessPool:
        raise MXGenError("an image-decoding process died while reading %s (killed, e.g. for"
                         " lack of memory); lower --num-workers (0 decodes in this process)"
                         " or --image-size" % root) from None


class ImageFolder:
    """All images under ``root`` (recursive) as uint8 ``(N, C, S, S)``.

    Parameters
    ----------
    root : str
        A folder, or ``"shapes"`` for the embedded procedural data set.
    size : int
        Output height and width.
    channels : {1, 3}
    num_workers : int
        Decoding processes (0 = in this process).
    limit : int or None
        Use only the first ``limit`` files (sorted), e.g. for a dry run.
    """

    def __init__(self, root, size, channels=3, num_workers=0, limit=None,
                 background=WHITE, num_shapes=4096, seed=0):
        self.root, self.size, self.channels = root, size, channels
        if root == SHAPES:
            count = num_shapes if limit is None else min(limit, num_shapes)
            self.images = draw_shapes(count, size, channels, seed=seed)
            self.paths, self.skipped, self.upscaled = [], [], 0
            return
        paths = list_images(root)
        if limit is not None:
            paths = paths[:limit]
        jobs = [(p, size, channels, tuple(background)) for p in paths]
        results = _decode_all(jobs, num_workers, root)
        good = [(p, a) for p, a, _, err in results if err is None]
        self.skipped = [(p, err) for p, _, _, err in results if err is not None]
        self.upscaled = sum(1 for _, _, up, err in results if up and err is None)
        if self.skipped:
            names = ", ".join(os.path.relpath(p, root) for p, _ in self.skipped[:10])
            more = "" if len(self.skipped) <= 10 else " and %d more" % (len(self.skipped) - 10)
            warnings.warn("skipped %d of %d files in %s that failed to decode: %s%s"
                          % (len(self.skipped), len(paths), root, names, more), stacklevel=2)
        if not good:
            raise MXGenError("no decodable image in %s (%d files tried; first error: %s)"
                             % (root, len(paths), self.skipped[0][1] if self.skipped else "-"))
        if self.upscaled:
            warnings.warn("%d of %d images in %s are smaller than %dx%d and were upscaled"
                          % (self.upscaled, len(good), root, size, size), stacklevel=2)
        self.paths = [p for p, _ in good]
        self.images = np.stack([a for _, a in good])                  # (N, C, S, S) uint8

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def to_float(batch):
    """uint8 ``(N, C, S, S)`` (numpy or NDArray) -> float32 in [-1, 1]."""
    return batch.astype("float32") / 127.5 - 1.0


def draw_shapes(count, size, channels=3, seed=0):
    """``count`` images of one random filled shape each, uint8 ``(count, C, S, S)``."""
    from PIL import Image, ImageDraw
    rng = np.random.RandomState(seed)
    out = np.empty((count, channels, size, size), dtype=np.uint8)
    for i in range(count):
        bg = tuple(int(v) for v in rng.randint(200, 256, size=3))
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        color = tuple(int(v) for v in rng.randint(0, 200, size=3))
        radius = rng.uniform(0.18, 0.4) * size
        cx, cy = rng.uniform(radius, size - radius, size=2)
        kind = rng.randint(4)
        if kind == 0:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        elif kind == 1:
            draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        else:
            corners = 3 if kind == 2 else 4
            angle = rng.uniform(0, 2 * np.pi)
            pts = [(cx + radius * np.cos(angle + 2 * np.pi * k / corners),
                    cy + radius * np.sin(angle + 2 * np.pi * k / corners)) for k in range(corners)]
            draw.polygon(pts, fill=color)
        if channels == 1:
            img = img.convert("L")
        arr = np.asarray(img, dtype=np.uint8)
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return out


def make_grid(images, nrow=None, padding=2):
    """float images in [-1, 1] ``(N, C, S, S)`` -> uint8 HWC grid."""
    images = np.asarray(images)
    n, c, s, _ = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    grid = np.full((ncol * (s + padding) + padding, nrow * (s + padding) + padding, c), 255,
                   dtype=np.uint8)
    pixels = np.clip((images + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    for k in range(n):
        r, col = divmod(k, nrow)
        y, x = padding + r * (s + padding), padding + col * (s + padding)
        grid[y:y + s, x:x + s] = pixels[k].transpose(1, 2, 0)
    return grid


def save_grid(images, path, nrow=None):
    """Save a PNG grid of float images in [-1, 1] atomically."""
    from PIL import Image
    grid = make_grid(images, nrow)
    with atomic_output(path) as tmp:
        Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).save(tmp)
    return path


def _pixels(array):
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] -> uint8 HWC."""
    arr = np.asarray(array)
    arr = arr[0] if arr.ndim == 4 else arr
    return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def save_image(array, path):
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] -> an image file (format
    from the extension), atomically."""
    from PIL import Image
    with atomic_output(path) as tmp:
        Image.fromarray(_pixels(array)).save(tmp)
    return path


def save_side_by_side(images, path, height=256, gap=4):
    """Images (any sizes, ``(1, 3, H, W)`` in [0, 1]) in one row, each
    scaled to ``height`` pixels high, e.g. content | style | result."""
    from PIL import Image
    tiles = []
    for arr in images:
        img = Image.fromarray(_pixels(arr))
        width = max(1, round(img.size[0] * height / img.size[1]))
        tiles.append(img.resize((width, height), Image.LANCZOS))
    row = Image.new("RGB", (sum(t.size[0] for t in tiles) + gap * (len(tiles) - 1), height),
                    WHITE)
    x = 0
    for tile in tiles:
        row.paste(tile, (x, 0))
        x += tile.size[0] + gap
    with atomic_output(path) as tmp:
        row.save(tmp)
    return path
