import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from mxgen.data.images import ImageFolder, draw_shapes, make_grid, to_float
from mxgen.errors import MXGenError

def test_real_folder_is_converted_resized_and_scaled(emoji_sample_dir, tmp_path):
    sub = tmp_path / "emoji"
    sub.mkdir()
    for name in sorted(os.listdir(emoji_sample_dir))[:40]:
        shutil.copy(os.path.join(emoji_sample_dir, name), sub / name)
    folder = ImageFolder(str(tmp_path), 32, channels=3)
    assert folder.images.shape == (40, 3, 32, 32) and folder.images.dtype == np.uint8
    batch = to_float(folder.images)
    assert batch.min() >= -1.0 and batch.max() <= 1.0 and batch.dtype == np.float32
    # transparent emoji backgrounds are composited on white: corners are white
    assert (folder.images[:, :, 0, 0] == 255).mean() > 0.9
    gray = ImageFolder(str(tmp_path), 32, channels=1)
    assert gray.images.shape == (40, 1, 32, 32)


def test_bad_files_are_skipped_and_named(tmp_path):
    Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("L", (16, 16), 128).save(tmp_path / "small.pgm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = ImageFolder(str(tmp_path), 32)
    messages = [str(w.message) for w in caught]
    assert any("skipped 1 of 3" in m and "broken.png" in m for m in messages), messages
    assert any("1 of 2 images" in m and "upscaled" in m for m in messages), messages
    assert len(folder) == 2
    assert folder.images.shape == (2, 3, 32, 32)
    # grayscale PGM became three equal channels
    small = folder.images[folder.paths.index(str(tmp_path / "small.pgm"))]
    assert (small[0] == small[1]).all() and (small[0] == 128).all()


def test_folder_errors(tmp_path):
    with pytest.raises(MXGenError, match="not found"):
        ImageFolder(str(tmp_path / "nope"), 32)
    with pytest.raises(MXGenError, match="contains no image files"):
        ImageFolder(str(tmp_path), 32)
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(MXGenError, match="no decodable image"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ImageFolder(str(tmp_path), 32)


def test_shapes_are_deterministic_and_varied():
    a = draw_shapes(16, 32, seed=1)
    assert np.array_equal(a, draw_shapes(16, 32, seed=1))
    assert not np.array_equal(a, draw_shapes(16, 32, seed=2))
    assert a.shape == (16, 3, 32, 32) and a.std() > 20
    grid = make_grid(to_float(a[:4]), nrow=2)
    assert grid.shape == (2 * 34 + 2, 2 * 34 + 2, 3)
