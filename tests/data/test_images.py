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


def _gray16(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)


def test_16_bit_and_float_images_keep_their_range(tmp_path):
    """16-bit (I;16) and float (F, values in [0, 1]) images become 8 bits by
    their real range, not clipped to all white or all black."""
    from mxgen.data.images import open_image
    ramp = np.tile(np.array([0, 257 * 64, 257 * 128, 65535], dtype=np.uint16), (4, 1))
    _gray16(tmp_path / "g16.png", ramp)
    got = np.asarray(open_image(str(tmp_path / "g16.png")))
    np.testing.assert_array_equal(got[0], [0, 64, 128, 255])
    floats = np.tile(np.array([0.0, 0.25, 0.5, 1.0], dtype=np.float32), (4, 1))
    Image.fromarray(floats).save(tmp_path / "f.tiff")
    got = np.asarray(open_image(str(tmp_path / "f.tiff")))
    np.testing.assert_array_equal(got[0], [0, 64, 128, 255])
    folder = tmp_path / "folder"
    folder.mkdir()
    _gray16(folder / "a.png", np.full((40, 40), 257 * 100))
    images = ImageFolder(str(folder), 32, channels=3).images
    assert images.shape == (1, 3, 32, 32) and (images == 100).all()


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    from mxgen.data.images import open_image
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "big.png")
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)     # 64x64 is above, 40x40 below
    with pytest.raises(MXGenError, match="big.png is (refused|64x64)"):
        open_image(str(tmp_path / "big.png"))
    with pytest.warns(UserWarning, match="skipped 1 of 2 files.*big.png"):
        folder = ImageFolder(str(tmp_path), 32)
    assert len(folder) == 1


def _die_on_second(job):
    """A decoding job that kills its process, as the OOM killer would."""
    import signal
    if job[0].endswith("0001.png"):
        os.kill(os.getpid(), signal.SIGKILL)
    return job[0], np.zeros((3, 8, 8), np.uint8), False, None


def test_a_decoding_process_that_dies_ends_the_run_instead_of_hanging(tmp_path, monkeypatch):
    import time

    from mxgen.data import images
    for i in range(300):                       # enough files for worker processes
        Image.new("RGB", (8, 8), (i % 255, 0, 0)).save(tmp_path / ("%04d.png" % i))
    monkeypatch.setattr(images, "_load_one", _die_on_second)
    started = time.time()
    with pytest.raises(MXGenError, match="an image-decoding process died while reading"):
        ImageFolder(str(tmp_path), 8, num_workers=2)
    assert time.time() - started < 60
