"""Bad input, across every command: one ``mxgen: error:`` line, exit 2, no
traceback, and every file that existed before byte-identical after.

The commands run in this process through ``mxgen.cli.main`` (what the
``mxgen`` console script calls), so every case costs milliseconds, not an
interpreter start; ``tests/test_cli.py`` runs the real subprocesses.
"""
import hashlib
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest

from mxgen.cli import main
from mxgen.train.gan import GANTrainConfig, train_gan
from mxgen.train.text import TextTrainConfig, train_text
from mxgen.utils.checkpoint import resolve
from tests.conftest import file_tree

TEXT = ("--num-hidden", 16, "--num-embed", 8, "--seq-len", 10, "--batch-size", 4,
        "--no-progress")
GAN = ("--image-size", 32, "--ngf", 8, "--ndf", 8, "--batch-size", 32, "--fid-samples", 32,
       "--decode-workers", 0, "--no-progress")


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, nietzsche_path):
    """A finished text run and a finished GAN run (one epoch each)."""
    root = tmp_path_factory.mktemp("finished")
    train_text(TextTrainConfig(data=nietzsche_path, out=str(root / "text"), max_chars=4000,
                               num_hidden=16, num_embed=8, seq_len=10, batch_size=4, epochs=1,
                               progress=False), log=_quiet)
    train_gan(GANTrainConfig(data="shapes", out=str(root / "gan"), image_size=32, ngf=8, ndf=8,
                             batch_size=32, max_images=64, epochs=1, fid_samples=32,
                             decode_workers=0, progress=False), log=_quiet)
    return root


def _pickle_trainer_state(run, name):
    """Make the latest checkpoint look like one whose optimizer states are a
    Python pickle (as mxgen's first format and Gluon's save_states wrote)."""
    import pickle
    ckpt = resolve(str(run), "latest")
    with open(os.path.join(ckpt, name + ".states"), "wb") as f:
        pickle.dump({"state": "anything"}, f)
    manifest_path = os.path.join(ckpt, "MANIFEST.json")
    manifest = json.load(open(manifest_path))
    for suffix in (".states.json", ".states.nd"):
        os.unlink(os.path.join(ckpt, name + suffix))
        del manifest["files"][name + suffix]
    manifest["files"][name + ".states"] = {
        "bytes": os.path.getsize(os.path.join(ckpt, name + ".states")),
        "sha256": hashlib.sha256(open(os.path.join(ckpt, name + ".states"), "rb").read())
        .hexdigest()}
    manifest["format"] = 1
    json.dump(manifest, open(manifest_path, "w"))


def _truncate(run, name):
    path = os.path.join(resolve(str(run), "latest"), name)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _rewrite_manifest(ckpt, change):
    manifest_path = os.path.join(ckpt, "MANIFEST.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    change(manifest["files"])
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)


def _damage(run, name):
    """Garbage in ``name`` with a manifest that matches it (only MXNet's
    reader can tell)."""
    ckpt = resolve(str(run), "best")
    path = os.path.join(ckpt, name)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(16)
        f.write(b"\xff" * 64)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    _rewrite_manifest(ckpt, lambda files: files.update({name: {"bytes": size,
                                                               "sha256": digest}}))


def _png_header(path, width, height):
    """A PNG that declares ``width`` x ``height`` 8-bit gray pixels in a few
    bytes (a decompression bomb's header; its data is never read)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                                    0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _image(path, array, mode=None):
    from PIL import Image
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def _prepare(setup, tmp_path, run, monkeypatch):
    """Make the situation a case needs (``setup`` names it, ``kind:arg``)."""
    corpus, folder = tmp_path / "corpus.txt", tmp_path / "folder"
    kind, _, arg = (setup or "").partition(":")
    if kind == "empty":
        corpus.write_text("")
    elif kind == "binary":
        corpus.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 10)
    elif kind == "short":
        corpus.write_text("too short\n")
    elif kind in ("folder", "garbage", "docs"):
        folder.mkdir()
        if kind == "garbage":
            (folder / "x.png").write_bytes(b"not an image")
        if kind == "docs":
            (folder / "notes.txt").write_text("the user's own notes")
    elif kind == "pickle":
        _pickle_trainer_state(run, arg)
    elif kind == "truncate":
        _truncate(run, arg)
    elif kind == "damage":
        _damage(run, arg)
    elif kind == "manifest-escape":
        _rewrite_manifest(resolve(str(run), "best"), lambda files: files.update(
            {"../../../etc/hostname": {"bytes": 1, "sha256": "0"}}))
    elif kind == "pointer-escape":
        for name in ("best", "latest"):
            (run / name).write_text(json.dumps({"dir": "../.."}))
    elif kind == "locked":
        from mxgen.utils.runfolder import RunLock
        return RunLock(str(run))                   # held until the case ends
    elif kind == "export":
        main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "exp")])
        if arg == "extra":
            (tmp_path / "exp" / "notes.txt").write_text("mine")
    elif kind == "images":
        rng = np.random.RandomState(0)
        _image(tmp_path / "c.png", rng.randint(0, 255, (32, 32, 3)).astype(np.uint8))
        _image(tmp_path / "out.png", rng.randint(0, 255, (32, 32, 3)).astype(np.uint8))
        _png_header(tmp_path / "bomb.png", 20000, 20000)
        _png_header(tmp_path / "bomb-small.png", 10000, 9000)   # above 1x, below 2x the limit
        _image(tmp_path / "float.tiff", (rng.rand(32, 32) * 1000).astype(np.float32))
        _image(tmp_path / "int32.tiff", rng.randint(0, 1 << 20, (32, 32)).astype(np.int32))
        (tmp_path / "samples").mkdir()
        (tmp_path / "dir.png").mkdir()
        _image(tmp_path / "samples" / "sample_0000.png", np.zeros((8, 8, 3), np.uint8))
    elif kind == "hosts":
        (tmp_path / "hosts").write_text("node1\n-oProxyCommand=touch_pwned\n")
    elif kind == "bench-json":
        (tmp_path / "bench.json").write_text("{}")
    elif kind == "env":
        name, _, value = arg.partition("=")
        monkeypatch.setenv(name, value)
    return None


# (case id, prepared run to copy or None, setup, argv, words the error must contain)
CASES = [
    # ---- text: data -----------------------------------------------------------
    ("text-missing-file", None, None,
     ["train-text", "--data", "{tmp}/nope.txt", "--out", "{tmp}/run", *TEXT],
     ["corpus not found", "nope.txt"]),
    ("text-empty-file", None, "empty",
     ["train-text", "--data", "{tmp}/corpus.txt", "--out", "{tmp}/run", *TEXT], ["is empty"]),
    ("text-binary-file", None, "binary",
     ["train-text", "--data", "{tmp}/corpus.txt", "--out", "{tmp}/run", *TEXT],
     ["looks like a binary file"]),
    ("text-too-short", None, "short",
     ["train-text", "--data", "{tmp}/corpus.txt", "--out", "{tmp}/run", *TEXT],
     ["fewer than one batch needs"]),
    ("text-empty-folder", None, "folder",
     ["train-text", "--data", "{tmp}/folder", "--out", "{tmp}/run", *TEXT], ["folder"]),
    # ---- text: flags ------------------------------------------------------------
    ("text-gpu-missing", None, None, ["train-text", "--ctx", "gpu:3", *TEXT],
     ["gpu:3 does not exist"]),
    ("text-batch-below-devices", None, None,
     ["train-text", "--ctx", "cpu:0,1", "--out", "{tmp}/run", *TEXT, "--batch-size", 1],
     ["smaller than the number of devices"]),
    ("text-unknown-device", None, None, ["train-text", "--ctx", "tpu", *TEXT],
     ["unknown device"]),
    ("text-zero-layers", None, None, ["train-text", "--num-layers", 0, *TEXT],
     ["--num-layers must be >= 1, got 0"]),
    ("text-negative-lr", None, None, ["train-text", "--lr", -1, *TEXT],
     ["--lr must be >= 0, got -1.0"]),
    ("text-dropout-above-one", None, None, ["train-text", "--dropout", 1.5, *TEXT],
     ["--dropout must be in [0, 1), got 1.5"]),
    ("text-val-fraction-one", None, None, ["train-text", "--val-fraction", 1, *TEXT],
     ["--val-fraction must be in [0, 1)"]),
    ("text-zero-seq-len", None, None, ["train-text", *TEXT, "--seq-len", 0],
     ["--seq-len must be >= 1"]),
    ("text-unknown-optimizer", None, None,
     ["train-text", "--optimizer", "nosuch", "--out", "{tmp}/run", "--dry-run", *TEXT],
     ["cannot create optimizer 'nosuch'"]),
    ("text-tie-weights-sizes", None, None,
     ["train-text", "--tie-weights", "--out", "{tmp}/run", "--dry-run", *TEXT],
     ["tie_weights needs num_embed == num_hidden"]),
    ("text-unknown-mode", None, None, ["train-text", "--mode", "lstmx", *TEXT],
     ["argument --mode: invalid choice: 'lstmx'"]),
    ("text-batch-not-a-number", None, None, ["train-text", "--batch-size", "abc"],
     ["argument --batch-size: invalid int value: 'abc'"]),
    # ---- text: checkpoints and resume -----------------------------------------
    ("text-resume-empty-folder", None, "folder",
     ["train-text", "--out", "{tmp}/folder", "--resume", *TEXT], ["is not a checkpoint"]),
    ("text-resume-finished", "text", None,
     ["train-text", "--out", "{run}", "--resume", "--no-progress"],
     ["nothing to train", "finished 1 of 1 epochs", "--epochs"]),
    ("text-resume-a-gan-run", "gan", None,
     ["train-text", "--out", "{run}", "--resume", "--epochs", 3, "--no-progress"],
     ["holds a 'dcgan' model, not a character RNN"]),
    ("text-resume-other-shape", "text", None,
     ["train-text", "--out", "{run}", "--resume", "--epochs", 2, "--num-hidden", 64,
      "--no-progress"], ["trained with num_hidden=16, but 64 was given"]),
    ("text-resume-pickled-state", "text", "pickle:trainer",
     ["train-text", "--out", "{run}", "--resume", "--epochs", 2, "--no-progress"],
     ["optimizer states as a Python pickle", "never unpickles"]),
    ("text-resume-truncated-params", "text", "truncate:model.params",
     ["train-text", "--out", "{run}", "--resume", "--epochs", 2, "--no-progress"],
     ["model.params is truncated or altered"]),
    ("generate-from-gan", "gan", None, ["generate", "--checkpoint", "{run}"],
     ["not a character RNN"]),
    ("generate-negative-temperature", "text", None,
     ["generate", "--checkpoint", "{run}", "--temperature", -1],
     ["temperature must be a finite number >= 0"]),
    ("generate-stop-at-eos-stream-model", "text", None,
     ["generate", "--checkpoint", "{run}", "--stop-at-eos"],
     ["--stop-at-eos needs a model trained on samples"]),
    ("text-samples-all-too-long", None, "short",
     ["train-text", "--data", "{tmp}/corpus.txt", "--samples", "files", "--max-len", 3,
      "--out", "{tmp}/run", *TEXT], ["longer than --max-len 3"]),
    ("text-samples-unknown-unit", None, None, ["train-text", "--samples", "words", *TEXT],
     ["argument --samples: invalid choice: 'words'"]),
    # ---- gan: data and flags ------------------------------------------------------
    ("gan-missing-folder", None, None,
     ["train-gan", "--data", "{tmp}/imgs", "--out", "{tmp}/run", *GAN],
     ["image folder not found"]),
    ("gan-empty-folder", None, "folder",
     ["train-gan", "--data", "{tmp}/folder", "--out", "{tmp}/run", *GAN],
     ["contains no image files"]),
    ("gan-undecodable-images", None, "garbage",
     ["train-gan", "--data", "{tmp}/folder", "--out", "{tmp}/run", *GAN],
     ["no decodable image"]),
    ("gan-sync-bn-on-cpu", None, None,
     ["train-gan", "--data", "shapes", "--max-images", 64, "--sync-bn", "--ctx", "cpu:0,1",
      "--out", "{tmp}/run", *GAN], ["--sync-bn", "needs GPU devices", "waits forever"]),
    ("gan-image-size-48", None, None, ["train-gan", "--image-size", 48],
     ["argument --image-size: invalid choice: 48"]),
    ("gan-two-channels", None, None, ["train-gan", "--channels", 2],
     ["argument --channels: invalid choice: 2"]),
    ("gan-negative-lr", None, None, ["train-gan", "--lr", -0.1, *GAN], ["--lr must be >= 0"]),
    ("gan-one-fid-sample", None, None, ["train-gan", *GAN, "--fid-samples", 1],
     ["--fid-samples must be >= 2"]),
    ("gan-fewer-images-than-a-batch", None, None,
     ["train-gan", "--data", "shapes", "--max-images", 16, "--out", "{tmp}/run", *GAN],
     ["fewer than one batch"]),
    ("gan-batch-below-devices", None, None,
     ["train-gan", "--ctx", "cpu:0,1", "--out", "{tmp}/run", *GAN, "--batch-size", 1],
     ["smaller than the number of devices"]),
    # ---- gan: checkpoints and resume ------------------------------------------
    ("gan-resume-a-text-run", "text", None,
     ["train-gan", "--out", "{run}", "--resume", "--epochs", 3, "--no-progress"],
     ["holds a 'char_rnn' model, not a DCGAN"]),
    ("gan-resume-finished", "gan", None,
     ["train-gan", "--out", "{run}", "--resume", "--no-progress"],
     ["nothing to train", "finished 1 of 1 epochs"]),
    ("gan-resume-other-size", "gan", None,
     ["train-gan", "--out", "{run}", "--resume", "--epochs", 2, "--image-size", 64,
      "--no-progress"], ["trained with image_size=32, but 64 was given"]),
    ("gan-resume-pickled-state", "gan", "pickle:trainer_g",
     ["train-gan", "--out", "{run}", "--resume", "--epochs", 2, "--no-progress"],
     ["trainer_g.states", "Python pickle"]),
    ("sample-gan-from-text", "text", None, ["sample-gan", "--checkpoint", "{run}"],
     ["not a DCGAN"]),
    ("sample-gan-zero-images", "gan", None, ["sample-gan", "--checkpoint", "{run}", "--num", 0],
     ["--num must be >= 1"]),
    # ---- precision ------------------------------------------------------------------------
    ("text-float16-on-cpu", None, None,
     ["train-text", "--dtype", "float16", "--out", "{tmp}/run", "--dry-run", *TEXT],
     ["--dtype float16 is half precision for GPUs", "use bfloat16"]),
    ("text-bfloat16-on-the-fused-op", None, None,
     ["train-text", "--dtype", "bfloat16", "--rnn-impl", "fused", "--out", "{tmp}/run",
      "--dry-run", *TEXT], ["--rnn-impl fused asks for MXNet's fused RNN op"]),
    ("gan-float16-on-cpu", None, None,
     ["train-gan", "--dtype", "float16", "--out", "{tmp}/run", "--dry-run", *GAN],
     ["--dtype float16 is half precision for GPUs"]),
    ("sample-gan-float16-on-cpu", "gan", None,
     ["sample-gan", "--checkpoint", "{run}", "--dtype", "float16", "--grid", "{tmp}/g.png"],
     ["--dtype float16 is half precision for GPUs"]),
    ("export-onnx-in-bfloat16", "gan", None,
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/exp", "--format", "onnx", "--dtype",
      "bfloat16"], ["--format onnx exports float32 graphs only"]),
    ("text-unknown-dtype", None, None, ["train-text", "--dtype", "half", *TEXT],
     ["argument --dtype: invalid choice: 'half'"]),
    # ---- export -----------------------------------------------------------------------
    ("export-out-exists", "gan", "export",
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/exp"],
     ["holds an earlier export; pass --force"]),
    ("export-force-onto-a-folder-of-documents", "gan", "docs",
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/folder", "--force"],
     ["is not an mxgen export", "--force replaces only an earlier export"]),
    ("export-force-onto-a-training-run", "gan", None,
     ["export", "--checkpoint", "{run}", "--out", "{run}", "--force"],
     ["is not an mxgen export"]),
    ("export-force-onto-an-export-with-other-files", "gan", "export:extra",
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/exp", "--force"],
     ["not part of its export (notes.txt)"]),
    ("export-out-is-a-file", "gan", "short",
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/corpus.txt"], ["is a file"]),
    ("export-onnx-recurrent", "text", None,
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/x", "--format", "onnx"],
     ["--format onnx cannot express the step graph"]),
    ("export-unknown-format", "gan", None,
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/x", "--format", "tflite"],
     ["argument --format: invalid choice: 'tflite'"]),
    ("generate-exported-not-an-export", None, "folder",
     ["generate", "--exported", "{tmp}/folder"], ["is not an mxgen export"]),
    ("sample-gan-exported-text", "text", None,
     ["sample-gan", "--exported", "{run}"], ["is not an mxgen export"]),
    # ---- style ------------------------------------------------------------------------
    ("stylize-missing-content", None, None,
     ["stylize", "--content", "{tmp}/nope.png", "--style", "{tmp}/nope2.png", "--dry-run"],
     ["content image not found", "nope.png"]),
    ("stylize-undecodable-style", None, "garbage",
     ["stylize", "--content", "{tmp}/folder/x.png", "--style", "{tmp}/folder/x.png",
      "--dry-run"], ["cannot be decoded as an image", "x.png"]),
    ("stylize-optim-without-style", None, None, ["stylize", "--content", "{tmp}/c.png"],
     ["--method optim needs --style"]),
    ("stylize-net-without-model", None, None,
     ["stylize", "--method", "net", "--content", "{tmp}/c.png"], ["--method net needs --model"]),
    ("stylize-net-with-a-gan", "gan", None,
     ["stylize", "--method", "net", "--model", "{run}", "--content", "{tmp}/c.png"],
     ["holds a 'dcgan' model, not a style network"]),
    ("stylize-vgg-params-wrong-file", "gan", None,
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/c.png", "--feature-net",
      "vgg16", "--vgg-params", "{run}/metrics.jsonl", "--dry-run"],
     ["metrics.jsonl does not hold vgg16 weights"]),
    ("stylize-vgg-params-missing", None, None,
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/c.png", "--feature-net",
      "vgg19", "--vgg-params", "{tmp}/vgg19.params", "--dry-run"],
     ["VGG weights file not found", "vgg19.params"]),
    ("stylize-negative-size", None, None,
     ["stylize", "--content", "x", "--style", "y", "--size", 4], ["--size must be >= 16"]),
    ("train-style-no-style", None, None,
     ["train-style", "--content-dir", "shapes", "--out", "{tmp}/run", "--dry-run"],
     ["--style IMG is required"]),
    ("train-style-missing-style", None, None,
     ["train-style", "--content-dir", "shapes", "--style", "{tmp}/nope.jpg", "--out",
      "{tmp}/run", "--dry-run", "--decode-workers", 0], ["style image not found"]),
    # ---- run folders: never someone else's, never two runs at once ------------------
    ("text-out-is-a-file", None, "short",
     ["train-text", "--out", "{tmp}/corpus.txt", *TEXT], ["is a file, not a run folder"]),
    ("text-dry-run-into-a-run", "text", None,
     ["train-text", "--out", "{run}", "--dry-run", *TEXT],
     ["holds a run at step", "pass --resume to continue it or --overwrite to replace it"]),
    ("text-new-run-into-a-run", "text", None, ["train-text", "--out", "{run}", *TEXT],
     ["holds a run at step"]),
    ("gan-new-run-into-a-run", "gan", None, ["train-gan", "--out", "{run}", *GAN],
     ["holds a run at step"]),
    ("style-new-run-into-a-run", "gan", None,
     ["train-style", "--out", "{run}", "--style", "{run}/loss.png", "--no-progress"],
     ["holds a run at step"]),
    ("text-into-a-folder-of-documents", None, "docs",
     ["train-text", "--out", "{tmp}/folder", *TEXT], ["holds other files, not an mxgen run"]),
    ("text-overwrite-a-folder-of-documents", None, "docs",
     ["train-text", "--out", "{tmp}/folder", "--overwrite", *TEXT],
     ["holds other files", "--overwrite replaces only an mxgen run"]),
    ("text-resume-and-overwrite", "text", None,
     ["train-text", "--out", "{run}", "--resume", "--overwrite", *TEXT],
     ["pass one of them"]),
    ("text-resume-a-run-in-use", "text", "locked",
     ["train-text", "--out", "{run}", "--resume", "--epochs", 2, "--no-progress"],
     ["is in use by another mxgen run (pid %d)" % os.getpid()]),
    ("gan-overwrite-a-run-in-use", "gan", "locked",
     ["train-gan", "--out", "{run}", "--overwrite", *GAN], ["is in use by another mxgen run"]),
    ("text-corpus-above-the-size-limit", None, "env:MXGEN_MAX_CORPUS_BYTES=100",
     ["train-text", "--data", "{tmp}/../corpus-big.txt", "--out", "{tmp}/run", *TEXT],
     ["larger than 100 bytes", "--max-chars"]),
    # ---- checkpoints that lie ------------------------------------------------------------
    ("generate-damaged-params-matching-manifest", "text", "damage:model.params",
     ["generate", "--checkpoint", "{run}"], ["model.params do not fit", "a damaged file"]),
    ("generate-manifest-names-a-path-outside", "text", "manifest-escape",
     ["generate", "--checkpoint", "{run}"], ["'../../../etc/hostname'", "not a file of the"]),
    ("generate-pointer-leads-outside", "text", "pointer-escape",
     ["generate", "--checkpoint", "{run}"], ["refers to '../..'", "not a checkpoint of this"]),
    ("generate-negative-length", "text", None,
     ["generate", "--checkpoint", "{run}", "--length", -5], ["length must be >= 0"]),
    # ---- stylize: inputs and outputs ---------------------------------------------------
    ("stylize-out-is-the-content", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/out.png", "--out",
      "{tmp}/c.png", "--dry-run", "--force"], ["c.png is also the input --content"]),
    ("stylize-out-is-the-style", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/out.png", "--out",
      "{tmp}/./out.png", "--dry-run", "--force"], ["is also the input --style"]),
    ("stylize-out-exists", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/c.png", "--out",
      "{tmp}/out.png", "--dry-run"], ["out.png exists; pass --force"]),
    ("stylize-out-unknown-extension", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/c.png", "--out", "{tmp}/x.xyz",
      "--dry-run"], ["'.xyz' is not an image format"]),
    ("stylize-out-is-a-folder", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/c.png", "--out",
      "{tmp}/dir.png", "--dry-run"], ["dir.png is a folder"]),
    ("stylize-decompression-bomb", None, "images",
     ["stylize", "--content", "{tmp}/bomb.png", "--style", "{tmp}/c.png", "--dry-run"],
     ["bomb.png is refused", "exceeds limit"]),
    ("stylize-above-the-pixel-limit", None, "images",
     ["stylize", "--content", "{tmp}/c.png", "--style", "{tmp}/bomb-small.png", "--dry-run"],
     ["bomb-small.png is refused"]),
    ("stylize-float-image-out-of-range", None, "images",
     ["stylize", "--content", "{tmp}/float.tiff", "--style", "{tmp}/c.png", "--dry-run"],
     ["float pixels in", "[0, 1]"]),
    ("stylize-32-bit-integer-image", None, "images",
     ["stylize", "--content", "{tmp}/int32.tiff", "--style", "{tmp}/c.png", "--dry-run"],
     ["32-bit integer pixels"]),
    ("stylize-content-is-a-folder", None, "images",
     ["stylize", "--content", "{tmp}/samples", "--style", "{tmp}/c.png", "--dry-run"],
     ["is a folder, not an image file"]),
    # ---- sample-gan: outputs and seeds -----------------------------------------------
    ("sample-gan-negative-seed", "gan", None,
     ["sample-gan", "--checkpoint", "{run}", "--seed", -1], ["--seed must be in [0, 2**32)"]),
    ("sample-gan-grid-is-a-folder", "gan", "images",
     ["sample-gan", "--checkpoint", "{run}", "--grid", "{tmp}/samples"], ["is a folder"]),
    ("sample-gan-grid-exists", "gan", "images",
     ["sample-gan", "--checkpoint", "{run}", "--grid", "{tmp}/out.png"],
     ["out.png exists; pass --force"]),
    ("sample-gan-out-dir-files-exist", "gan", "images",
     ["sample-gan", "--checkpoint", "{run}", "--out-dir", "{tmp}/samples", "--num", 2],
     ["sample_0000.png exists; pass --force"]),
    ("sample-gan-grid-not-an-image", "gan", None,
     ["sample-gan", "--checkpoint", "{run}", "--grid", "{tmp}/grid.txt"],
     ["'.txt' is not an image format"]),
    ("sample-gan-one-interpolation-step", "gan", None,
     ["sample-gan", "--checkpoint", "{run}", "--interpolate", "--steps", 1],
     ["--steps must be >= 2"]),
    # ---- launch ------------------------------------------------------------------------
    ("launch-port-out-of-range", None, None,
     ["launch", "-n", 1, "--port", 99999, "--", "true"], ["--port must be in 1-65535"]),
    ("launch-no-workers", None, None, ["launch", "-n", 0, "--", "true"],
     ["--num-workers must be >= 1"]),
    ("launch-zero-timeout", None, None, ["launch", "-n", 1, "--timeout", 0, "--", "true"],
     ["--timeout must be > 0"]),
    ("launch-host-that-is-an-option", None, "hosts",
     ["launch", "-n", 1, "--launcher", "ssh", "--hosts", "{tmp}/hosts", "--print-commands",
      "--", "true"], ["'-oProxyCommand=touch_pwned' is not a host name"]),
    ("launch-hosts-without-ssh", None, "hosts",
     ["launch", "-n", 1, "--hosts", "{tmp}/hosts", "--", "true"], ["--hosts needs"]),
    # ---- bench and info ----------------------------------------------------------------
    ("bench-suite-missing", None, None, ["bench", "--suite", "{tmp}/nope"],
     ["benchmark folder not found"]),
    ("bench-json-exists", None, "bench-json", ["bench", "--json", "{tmp}/bench.json", "--list"],
     ["bench.json exists; pass --force"]),
    ("bench-compare-missing", None, None, ["bench", "--compare", "{tmp}/old.json"],
     ["benchmark results not found"]),
    ("info-unknown-flag", None, None, ["info", "--verbose-please"],
     ["unrecognized arguments: --verbose-please"]),
]


@pytest.mark.parametrize("case,run_name,setup,argv,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, run_name, setup, argv, needles, tmp_path, finished_runs, capsys,
                   monkeypatch):
    root = tmp_path
    (root / "corpus-big.txt").write_text("words " * 100)
    tmp_path = root / "case"
    tmp_path.mkdir()
    run = tmp_path / "prepared"
    if run_name:
        shutil.copytree(finished_runs / run_name, run)
    held = _prepare(setup, tmp_path, run, monkeypatch)
    capsys.readouterr()
    before = file_tree(root)
    args = [str(a).format(tmp=tmp_path, run=run) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if held is not None:
        held.release()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mxgen: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    after = file_tree(root)
    lost = {path for path in before if after.get(path) != before[path]}
    assert not lost, "files changed or lost: %s" % sorted(lost)


def test_at_least_45_cases_over_every_command():
    from mxgen.cli import COMMANDS
    assert len(CASES) >= 45
    assert {c[3][0] for c in CASES} == set(COMMANDS)
