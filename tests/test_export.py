"""Export to static graphs, reload without mxgen, ONNX, TensorBoard."""
import json
import os
import struct
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from mxgen import _native
from mxgen.errors import MXGenError
from mxgen.export import export, generate_exported, load_exported
from mxgen.generation import generate
from mxgen.generation import CharRNNStepper
from mxgen.models import load
from mxgen.models.dcgan import generate_images
from mxgen.train.gan import GANTrainConfig, train_gan
from mxgen.train.style import StyleTrainConfig, train_style
from mxgen.train.text import TextTrainConfig, train_text
from tests.conftest import REPO


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nietzsche_path, emoji_sample_dir):
    root = tmp_path_factory.mktemp("runs")
    train_text(TextTrainConfig(data=nietzsche_path, out=str(root / "text"), max_chars=4000,
                               num_hidden=16, num_embed=8, seq_len=10, batch_size=4,
                               dry_run=True, progress=False, rnn_impl="fused"), log=_quiet)
    train_gan(GANTrainConfig(data="shapes", out=str(root / "gan"), image_size=32, ngf=8, ndf=8,
                             batch_size=16, max_images=32, fid_samples=16, decode_workers=0,
                             dry_run=True, progress=False), log=_quiet)
    train_style(StyleTrainConfig(content_dir=emoji_sample_dir, out=str(root / "style"),
                                 style=os.path.join(emoji_sample_dir, "emoji_u002a.png"),
                                 image_size=32, width=8, residual=1, decode_workers=0,
                                 dry_run=True, progress=False), log=_quiet)
    return root


_RELOAD = r"""
import json, os, sys
import numpy as np
import mxnet as mx                       # MXNet only: no mxgen import in this process
folder, out = sys.argv[1], sys.argv[2]
meta = json.load(open(os.path.join(folder, "export.json")))
inputs = dict(np.load(os.path.join(out, "inputs.npz")))
results = {}
for name, graph in meta["graphs"].items():
    block = mx.gluon.SymbolBlock.imports(os.path.join(folder, graph["symbol"]), graph["inputs"],
                                         os.path.join(folder, graph["params"]))
    args = [mx.nd.array(inputs["%s_%d" % (name, i)]) for i in range(len(graph["inputs"]))]
    outs = block(*args)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    results[name] = outs[0].asnumpy()
np.savez(os.path.join(out, "outputs.npz"), **results)
assert "mxgen" not in sys.modules
"""


def _reload_without_mxgen(folder, inputs, tmp_path):
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = dict(os.environ, PYTHONPATH="")                  # mxgen is not importable there
    proc = subprocess.run([sys.executable, "-c", _RELOAD, str(folder), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp_path / "outputs.npz"))


def test_char_model_export_reloads_without_mxgen_with_identical_logits(runs, tmp_path):
    meta = export(str(runs / "text"), str(tmp_path / "exp"))
    assert meta["requires"] is None and set(meta["graphs"]) == {"sequence", "step"}
    assert not any(g["native_ops"] for g in meta["graphs"].values())
    loaded = load(str(runs / "text"))
    model, vocab = loaded.model, loaded.vocab
    rng = np.random.RandomState(0)
    states = [s.asnumpy() + rng.normal(0, 0.1, s.shape).astype(np.float32)
              for s in model.begin_state(3)]
    seq = rng.randint(0, len(vocab), (6, 3)).astype(np.float32)
    ids = rng.randint(0, len(vocab), (3,)).astype(np.float32)
    inputs = {"sequence_0": seq, "step_0": ids}
    for i, s in enumerate(states):
        inputs["sequence_%d" % (i + 1)] = inputs["step_%d" % (i + 1)] = s
    out = _reload_without_mxgen(tmp_path / "exp", inputs, tmp_path)
    ref_seq = model(mx.nd.array(seq), *[mx.nd.array(s) for s in states])[0].asnumpy()
    stepper = CharRNNStepper(model)
    stepper.collect_params().initialize()
    ref_step = stepper(mx.nd.array(ids), *[mx.nd.array(s) for s in states])[0].asnumpy()
    np.testing.assert_array_equal(out["sequence"], ref_seq)
    np.testing.assert_array_equal(out["step"], ref_step)
    # and mxgen generates from the export what it generates from the checkpoint
    a = generate_exported(str(tmp_path / "exp"), "The ", 30, temperature=0, num_samples=2)
    b = generate(model, vocab, "The ", 30, temperature=0, num_samples=2, native=False)
    assert a == b


def test_generator_and_style_exports_reload_without_mxgen(runs, tmp_path):
    export(str(runs / "gan"), str(tmp_path / "gan"))
    export(str(runs / "style"), str(tmp_path / "style"))
    z = np.random.RandomState(1).normal(size=(5, 100, 1, 1)).astype(np.float32)
    gen = load(str(runs / "gan")).model
    out = _reload_without_mxgen(tmp_path / "gan", {"generator_0": z}, tmp_path)
    np.testing.assert_array_equal(out["generator"], generate_images(gen, z))
    images = np.random.RandomState(2).uniform(0, 1, (2, 3, 36, 44)).astype(np.float32)
    net = load(str(runs / "style")).model
    with mx.autograd.predict_mode():
        ref = net(mx.nd.array(images)).asnumpy()
    (tmp_path / "s").mkdir()
    out = _reload_without_mxgen(tmp_path / "style", {"transformer_0": images}, tmp_path / "s")
    np.testing.assert_allclose(out["transformer"], ref, rtol=1e-6, atol=1e-6)


def test_generator_onnx_matches_mxnet(runs, tmp_path):
    """The ONNX file run by ONNX's reference evaluator and by onnxruntime
    gives MXNet's images within 1e-5."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    meta = export(str(runs / "gan"), str(tmp_path / "onnx"), fmt="onnx")
    model = onnx.load(str(tmp_path / "onnx" / meta["graphs"]["generator"]["onnx"]))
    z = np.random.RandomState(3).normal(size=(4, 100, 1, 1)).astype(np.float32)
    gen = load(str(runs / "gan")).model
    ref = generate_images(gen, z)
    out = ReferenceEvaluator(model).run(None, {"data": z})[0]
    np.testing.assert_allclose(out, ref, atol=1e-5)
    import onnxruntime        # README command 2 installs it (scripts/install-onnxruntime.sh)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "generator.onnx"))
    np.testing.assert_allclose(session.run(None, {"data": z})[0], ref, atol=1e-5)


def test_onnx_for_the_recurrent_graph_is_a_clear_error(runs, tmp_path):
    with pytest.raises(MXGenError, match="--format onnx cannot express the step graph"):
        export(str(runs / "text"), str(tmp_path / "x"), fmt="onnx")
    assert not os.path.exists(tmp_path / "x")             # nothing half-written
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-export")]


@pytest.mark.skipif(not _native.available(), reason="needs mxgen's native library, which"
                    " pip install -e . builds (it is missing here: see mxgen info)")
def test_native_export_needs_the_library_and_the_default_does_not(tmp_path, nietzsche_path):
    train_text(TextTrainConfig(data=nietzsche_path, out=str(tmp_path / "run"), max_chars=4000,
                               num_hidden=16, num_embed=8, seq_len=10, batch_size=4,
                               dry_run=True, progress=False, rnn_impl="native"), log=_quiet)
    native = export(str(tmp_path / "run"), str(tmp_path / "native"), native=True)
    assert native["graphs"]["sequence"]["native_ops"] == ["mxgen_lstm"]
    assert "libmxgen_kernels" in native["requires"]
    plain = export(str(tmp_path / "run"), str(tmp_path / "plain"))
    assert plain["requires"] is None and "RNN" in plain["graphs"]["sequence"]["ops"]
    # with the library (this process): the native graph gives the fused graph's logits
    seq_native, _ = load_exported(str(tmp_path / "native"), "sequence")
    seq_plain, _ = load_exported(str(tmp_path / "plain"), "sequence")
    data = mx.nd.array(np.random.RandomState(0).randint(0, 10, (5, 2)))
    states = [mx.nd.zeros((1, 2, 16)) for _ in range(4)]
    np.testing.assert_allclose(seq_native(data, *states)[0].asnumpy(),
                               seq_plain(data, *states)[0].asnumpy(), rtol=1e-4, atol=1e-5)
    # without it: a clear error naming the library
    code = ("import sys; from mxgen.export import load_exported; from mxgen.errors import"
            " MXGenError\ntry:\n    load_exported(sys.argv[1], 'sequence')\nexcept MXGenError as e:"
            "\n    print(e); sys.exit(3)")
    env = dict(os.environ, MXGEN_NATIVE="0", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "native")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "mxgen_lstm" in proc.stdout and "libmxgen_kernels" in proc.stdout


def test_export_bad_input(runs, tmp_path):
    export(str(runs / "gan"), str(tmp_path / "out"))
    with pytest.raises(MXGenError, match="holds an earlier export; pass --force"):
        export(str(runs / "gan"), str(tmp_path / "out"))
    export(str(runs / "gan"), str(tmp_path / "out"), force=True)          # replaced
    assert os.path.isfile(tmp_path / "out" / "generator-symbol.json")
    with pytest.raises(MXGenError, match="checkpoint not found"):
        export(str(tmp_path / "nothing"), str(tmp_path / "o2"))
    # damaged: a truncated parameter file
    import shutil

    from mxgen.utils import checkpoint as ckpt
    shutil.copytree(runs / "gan", tmp_path / "damaged")
    params = os.path.join(ckpt.resolve(str(tmp_path / "damaged"), "best"), "generator.params")
    with open(params, "r+b") as f:
        f.truncate(100)
    with pytest.raises(MXGenError, match="generator.params is truncated or altered"):
        export(str(tmp_path / "damaged"), str(tmp_path / "o4"))
    # a checkpoint of a family mxgen does not know
    writer = ckpt.CheckpointWriter(str(tmp_path / "alien"), 1)
    with writer:
        writer.write_json("config.json", {"family": "wavenet"})
    writer.point("latest")
    with pytest.raises(MXGenError, match="holds a 'wavenet' model; mxgen knows"):
        export(str(tmp_path / "alien"), str(tmp_path / "o5"))
    for name in ("o2", "o4", "o5"):
        assert not os.path.exists(tmp_path / name)
    with pytest.raises(MXGenError, match="unknown export format"):
        export(str(runs / "gan"), str(tmp_path / "o3"), fmt="tflite")


def _events(folder):
    """Every event in a folder of TensorBoard event files (TFRecord framing:
    length, its CRC, the Event protobuf, its CRC)."""
    from tensorboardX.proto import event_pb2
    events = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            body = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            events.append(event_pb2.Event.FromString(body))
    return events


def test_tensorboard_event_files_hold_scalars_images_and_text(tmp_path, nietzsche_path):
    train_text(TextTrainConfig(data=nietzsche_path, out=str(tmp_path / "t"), max_chars=4000,
                               num_hidden=16, num_embed=8, seq_len=10, batch_size=4,
                               dry_run=True, progress=False, tensorboard=True,
                               log_interval=1), log=_quiet)
    train_gan(GANTrainConfig(data="shapes", out=str(tmp_path / "g"), image_size=32, ngf=8,
                             ndf=8, batch_size=16, max_images=32, fid_samples=16, decode_workers=0,
                             dry_run=True, progress=False, tensorboard=True, log_interval=1),
              log=_quiet)
    text = _events(tmp_path / "t" / "tensorboard")
    tags = {v.tag: v for e in text for v in e.summary.value}
    metrics = [json.loads(line) for line in open(tmp_path / "t" / "metrics.jsonl")]
    val = [m for m in metrics if m["kind"] == "val"][-1]
    assert tags["val/val_bpc"].simple_value == pytest.approx(val["val_bpc"], rel=1e-6)
    assert "train/tokens_per_s" in tags
    assert any(tag.startswith("sample") for tag in tags)          # generated text
    gan = {v.tag: v for e in _events(tmp_path / "g" / "tensorboard") for v in e.summary.value}
    assert "eval/frechet_distance" in gan and "train/images_per_s" in gan
    assert gan["samples"].image.height > 0 and gan["samples"].image.encoded_image_string
