"""Bad input, across both families: one ``mxgen: error:`` line, exit 2, no
traceback, and nothing already written lost.

The commands run in this process through ``mxgen.cli.main`` (what the
``mxgen`` console script calls), so every case costs milliseconds, not an
interpreter start; ``tests/test_cli.py`` runs the real subprocesses.
"""
import hashlib
import json
import os
import shutil

import pytest

from mxgen.cli import main
from mxgen.train.gan import GANTrainConfig, train_gan
from mxgen.train.text import TextTrainConfig, train_text
from mxgen.utils.checkpoint import resolve

TEXT = ("--num-hidden", 16, "--num-embed", 8, "--seq-len", 10, "--batch-size", 4,
        "--no-progress")
GAN = ("--image-size", 32, "--ngf", 8, "--ndf", 8, "--batch-size", 32, "--fid-samples", 32,
       "--num-workers", 0, "--no-progress")


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
                             num_workers=0, progress=False), log=_quiet)
    return root


def _tree(path):
    """{relative path: sha256} of every file under ``path``."""
    found = {}
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


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
    # ---- export -----------------------------------------------------------------------
    ("export-out-exists", "gan", "folder",
     ["export", "--checkpoint", "{run}", "--out", "{tmp}/folder"],
     ["folder exists; pass --force"]),
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
      "{tmp}/run", "--dry-run", "--num-workers", 0], ["style image not found"]),
]


@pytest.mark.parametrize("case,run_name,setup,argv,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, run_name, setup, argv, needles, tmp_path, finished_runs, capsys):
    run = tmp_path / "prepared"
    if run_name:
        shutil.copytree(finished_runs / run_name, run)
    corpus, folder = tmp_path / "corpus.txt", tmp_path / "folder"
    if setup == "empty":
        corpus.write_text("")
    elif setup == "binary":
        corpus.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 10)
    elif setup == "short":
        corpus.write_text("too short\n")
    elif setup in ("folder", "garbage"):
        folder.mkdir()
        if setup == "garbage":
            (folder / "x.png").write_bytes(b"not an image")
    elif setup and setup.startswith("pickle:"):
        _pickle_trainer_state(run, setup.split(":")[1])
    elif setup and setup.startswith("truncate:"):
        _truncate(run, setup.split(":")[1])
    before = _tree(tmp_path)
    args = [str(a).format(tmp=tmp_path, run=run) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mxgen: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    after = _tree(tmp_path)
    lost = {path for path in before if after.get(path) != before[path]}
    assert not lost, "files changed or lost: %s" % sorted(lost)


def test_there_are_at_least_25_cases_across_both_families():
    families = {c[3][0] for c in CASES}
    assert len(CASES) >= 25 and {"train-text", "train-gan"} <= families
