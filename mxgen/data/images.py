"""Image folders for the GAN: decode once, convert, resize, crop, scale to [-1, 1].

Every image is decoded up front (in worker processes when there are many),
converted to the model's channel count, resized so its shorter side matches
the model size and centre-cropped, then kept as uint8 ``(N, C, S, S)``; the
DataLoader turns batches into float32 in [-1, 1].

* Channels: RGBA / LA / palette images with transparency are composited on
  ``background`` (white by default, right for emoji and icons); grayscale
  becomes 3 equal channels for an RGB model, colour becomes luminance for a
  1-channel model.
* Images smaller than the model size are UPSCALED (bicubic) with one warning
  that counts them; they are not an error.
* Files that fail to decode are skipped and named in one warning; a folder
  with no decodable image is an error.

``shapes`` is the embedded default data set: procedurally drawn circles,
squares, triangles and diamonds in random colours, positions and sizes on a
light background (deterministic for a seed; no download).
"""
import os
import warnings
from multiprocessing import Pool

import numpy as np

from ..errors import MXGenError

__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_image", "ImageFolder", "draw_shapes",
           "SHAPES", "to_float", "save_grid", "make_grid"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".bmp", ".gif")
SHAPES = "shapes"


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


def load_image(path, size, channels, background=(255, 255, 255)):
    """Decode one file to uint8 ``(channels, size, size)``.

    Returns ``(array, upscaled)``; raises OSError/ValueError if undecodable.
    """
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            canvas = Image.new("RGBA", img.size, tuple(background) + (255,))
            canvas.alpha_composite(img)
            img = canvas
        img = img.convert("RGB" if channels == 3 else "L")
        width, height = img.size
        upscaled = min(width, height) < size
        scale = size / min(width, height)
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new_size != img.size:
            img = img.resize(new_size, Image.BICUBIC if upscaled else Image.LANCZOS)
        left = (img.size[0] - size) // 2
        top = (img.size[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.uint8)
    if channels == 1:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr), upscaled


def _load_one(job):
    path, size, channels, background = job
    try:
        arr, upscaled = load_image(path, size, channels, background)
        return path, arr, upscaled, None
    except Exception as err:  # PIL raises many types for bad files
        return path, None, False, "%s: %s" % (type(err).__name__, err)


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
                 background=(255, 255, 255), num_shapes=4096, seed=0):
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
        if num_workers > 0 and len(jobs) > 256:
            with Pool(num_workers) as pool:
                results = pool.map(_load_one, jobs, chunksize=64)
        else:
            results = [_load_one(j) for j in jobs]
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
    """Save a PNG grid atomically (temp file + rename)."""
    from PIL import Image
    grid = make_grid(images, nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)
    return path
