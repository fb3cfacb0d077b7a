"""What mxgen never does to your files (README, "What mxgen will never do to
your files"): each guarantee there is checked here or named beside it.

Every test here fails when its guarantee is broken: a dry run into the
default folder, a new run over an old one, two runs on one folder, an
output written over an input, a temporary file left behind.
"""
import os
import subprocess
import sys
import time

import pytest

from mxgen.errors import MXGenError
from mxgen.utils.files import atomic_output, check_outputs
from tests.conftest import REPO, file_tree

SMALL = ["--num-hidden", "16", "--num-embed", "8", "--seq-len", "10", "--batch-size", "4",
         "--no-progress", "--rnn-impl", "fused", "--dropout-impl", "mxnet"]


def _mxgen(*args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mxgen"] + [str(a) for a in args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def a_run(tmp_path, nietzsche_path):
    """A user's finished run in runs/text (the default --out) under tmp_path."""
    proc = _mxgen("train-text", "--data", nietzsche_path, "--max-chars", 4000, "--epochs", 1,
                  "--out", "runs/text", *SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "runs" / "text"


def test_a_dry_run_never_touches_the_default_run_folder(a_run, nietzsche_path):
    before = file_tree(a_run)
    proc = _mxgen("train-text", "--data", nietzsche_path, "--dry-run", *SMALL,
                  cwd=a_run.parent.parent)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("dry run: writing to "))
    temp = line.split()[4]
    assert os.path.isfile(os.path.join(temp, "latest")) and not temp.startswith(str(a_run))
    assert file_tree(a_run) == before


def test_a_new_run_over_an_old_one_is_refused_and_overwrite_moves_it_aside(a_run,
                                                                           nietzsche_path):
    before = file_tree(a_run)
    refused = _mxgen("train-text", "--data", nietzsche_path, "--max-chars", 3000,
                     "--max-steps", 2, *SMALL, cwd=a_run.parent.parent)
    assert refused.returncode == 2
    assert "runs/text holds a run at step" in refused.stderr
    assert file_tree(a_run) == before
    replaced = _mxgen("train-text", "--data", nietzsche_path, "--max-chars", 3000,
                      "--max-steps", 2, "--overwrite", *SMALL, cwd=a_run.parent.parent)
    assert replaced.returncode == 0, replaced.stderr
    aside = [d for d in os.listdir(a_run.parent) if d.startswith("text.replaced-")]
    assert len(aside) == 1 and "moved the previous run" in replaced.stdout
    assert file_tree(a_run.parent / aside[0]) == before          # every file kept, as it was
    assert os.path.isfile(a_run / "latest")                   # and the new run in its place


def test_two_runs_on_one_folder_the_second_is_refused_naming_the_first(a_run,
                                                                        nietzsche_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = subprocess.Popen([sys.executable, "-m", "mxgen", "train-text", "--out", str(a_run),
                              "--resume", "--epochs", "1000", "--no-progress"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lock = a_run / ".mxgen.lock"
        deadline = time.time() + 120
        while time.time() < deadline:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.2)
        second = _mxgen("train-text", "--out", a_run, "--resume", "--epochs", 1000,
                        "--no-progress", cwd=a_run.parent)
        assert second.returncode == 2
        assert "is in use by another mxgen run (pid %d)" % first.pid in second.stderr
        overwrite = _mxgen("train-text", "--out", a_run, "--overwrite", *SMALL,
                           cwd=a_run.parent)
        assert overwrite.returncode == 2 and "in use" in overwrite.stderr
        assert first.poll() is None                       # the first run goes on
    finally:
        first.kill()
        first.wait()


def test_outputs_never_replace_inputs_and_replace_files_only_when_asked(tmp_path):
    content = tmp_path / "photo.png"
    content.write_bytes(b"the user's photo")
    with pytest.raises(MXGenError, match="is also the input --content"):
        check_outputs({str(tmp_path / "." / "photo.png"): "--out"},
                      inputs={str(content): "--content"}, force=True)
    os.link(content, tmp_path / "hardlink.png")
    with pytest.raises(MXGenError, match="is also the input --content"):
        check_outputs({str(tmp_path / "hardlink.png"): "--out"},
                      inputs={str(content): "--content"}, force=True)
    with pytest.raises(MXGenError, match="exists; pass --force"):
        check_outputs({str(content): "--out"})
    check_outputs({str(tmp_path / "new.png"): "--out"}, inputs={str(content): "--content"})


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"old grid")
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half a new gr")
            raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old grid"
    assert os.listdir(tmp_path) == ["grid.png"]
    with atomic_output(str(target)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new grid")
    assert target.read_bytes() == b"new grid" and os.listdir(tmp_path) == ["grid.png"]


def test_stylize_replaces_its_output_only_with_force(tmp_path, emoji_sample_dir):
    content = os.path.join(emoji_sample_dir, "emoji_u0030.png")
    style = os.path.join(emoji_sample_dir, "emoji_u002a.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"an earlier result the user kept")
    args = ["stylize", "--content", content, "--style", style, "--out", out, "--dry-run",
            "--no-progress"]
    refused = _mxgen(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "exists; pass --force" in refused.stderr
    assert out.read_bytes() == b"an earlier result the user kept"
    done = _mxgen(*args, "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir(tmp_path)) == ["out-side.png", "out.metrics.jsonl", "out.png"]
