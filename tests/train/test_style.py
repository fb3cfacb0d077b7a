"""Training the feed-forward style network: loss goes down, exact resume."""
import json

import numpy as np
import pytest
from PIL import Image

from mxgen.errors import MXGenError
from mxgen.models import load
from mxgen.data.images import read_image
from mxgen.stylize import stylize_net
from mxgen.train.style import StyleTrainConfig, train_style


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def style_png(tmp_path_factory):
    """A style image made here: diagonal colour stripes."""
    y, x = np.mgrid[:48, :48]
    colours = np.array([[230, 50, 25], [25, 75, 230], [240, 230, 50]], dtype=np.uint8)
    path = tmp_path_factory.mktemp("style") / "stripes.png"
    Image.fromarray(colours[((x + y) // 6) % 3]).save(path)
    return str(path)


def _cfg(content, style, out, **kw):
    base = dict(content_dir=content, style=style, out=str(out), image_size=32, width=8,
                residual=1, batch_size=4, epochs=3, lr=5e-3, decode_workers=0, progress=False,
                log_interval=2, seed=3, max_images=16)
    base.update(kw)
    return StyleTrainConfig(**base)


def test_training_lowers_the_loss_and_stylises_in_one_pass(emoji_sample_dir, style_png,
                                                          tmp_path):
    result = train_style(_cfg(emoji_sample_dir, style_png, tmp_path / "run", epochs=6),
                         log=_quiet)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl")
              if json.loads(line)["kind"] == "train"]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    assert result["sample"].endswith(".png")
    loaded = load(str(tmp_path / "run"), family="style_net")
    net, meta = loaded.model, loaded.meta
    assert meta["feature_net"].startswith("random_multiscale_v1")
    content, _ = read_image(emoji_sample_dir + "/emoji_u0030.png", size=40, multiple=4)
    out = stylize_net(net, content)
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1


def test_resume_is_exact(emoji_sample_dir, style_png, tmp_path):
    train_style(_cfg(emoji_sample_dir, style_png, tmp_path / "a", epochs=2), log=_quiet)
    first = train_style(_cfg(emoji_sample_dir, style_png, tmp_path / "b", epochs=2,
                             max_steps=3), log=_quiet)
    assert first["stopped"] == "max_steps"
    train_style(_cfg(emoji_sample_dir, style_png, tmp_path / "b", epochs=2, resume=True),
                log=_quiet)
    a = load(str(tmp_path / "a"), prefer="latest").model._collect_params_with_prefix()
    b = load(str(tmp_path / "b"), prefer="latest").model._collect_params_with_prefix()
    for key in a:
        np.testing.assert_array_equal(a[key].data().asnumpy(), b[key].data().asnumpy(),
                                      err_msg=key)


def test_two_devices_give_the_one_device_gradient(emoji_sample_dir, style_png):
    """The step's update over two devices equals one device's (plain SGD,
    lr 1, so the parameter change IS the mean gradient)."""
    import mxnet as mx
    from mxnet import gluon

    from mxgen.data.images import ImageFolder
    from mxgen.distributed import Cluster
    from mxgen.train.style import build_style_step

    cfg = _cfg(emoji_sample_dir, style_png, "unused")
    images = ImageFolder(emoji_sample_dir, 32, 3, limit=4).images.astype(np.float32) / 255
    style, _ = read_image(style_png, shorter=32)
    changes = []
    for ctxs in ([mx.cpu()], [mx.cpu(0), mx.cpu(1)]):
        mx.random.seed(1)
        net, step, _ = build_style_step(cfg, ctxs, Cluster(None, ctxs), style)
        step.trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
        before = {k: p.data(ctxs[0]).asnumpy() for k, p in
                  net._collect_params_with_prefix().items()}
        sums = step(mx.nd.array(images)).asnumpy()
        changes.append((sums, {k: before[k] - p.data(ctxs[0]).asnumpy()
                               for k, p in net._collect_params_with_prefix().items()}))
    (sums1, one), (sums2, two) = changes
    np.testing.assert_allclose(sums1, sums2, rtol=1e-5)
    scale = max(np.abs(g).max() for g in one.values())
    for key in one:       # float summation order differs: tolerance scaled to the gradients
        np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=key)


def test_style_is_required(emoji_sample_dir, tmp_path):
    with pytest.raises(MXGenError, match="--style IMG is required"):
        train_style(_cfg(emoji_sample_dir, None, tmp_path / "r"), log=_quiet)


def test_loading_another_family_is_a_clear_error(tmp_path, nietzsche_path):
    from mxgen.train.text import TextTrainConfig, train_text
    train_text(TextTrainConfig(data=nietzsche_path, out=str(tmp_path / "text"), max_chars=3000,
                               num_hidden=8, num_embed=4, seq_len=10, batch_size=4,
                               dry_run=True, progress=False), log=_quiet)
    with pytest.raises(MXGenError, match="holds a 'char_rnn' model, not a style network"):
        load(str(tmp_path / "text"), family="style_net")
