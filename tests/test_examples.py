"""Every script in examples/ runs with --dry-run (as a reader would run it)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

EXAMPLES = sorted(f for f in os.listdir(os.path.join(REPO, "examples")) if f.endswith(".py"))


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    args = [sys.executable, os.path.join(REPO, "examples", script), "--dry-run"]
    if script in ("char_lstm.py", "dcgan.py"):
        args += ["--out", str(tmp_path / "run")]
    proc = subprocess.run(args, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if script == "gaussian_heights.py":       # the tutorial's figures
        assert "martian  n=10  mean 274.0 cm  sigma 26.15 (MLE) / 27.57 (unbiased)" \
            in proc.stdout
        assert "human    n=10  mean 174.5 cm  sigma 21.96 (MLE) / 23.15 (unbiased)" \
            in proc.stdout


def test_every_part_of_the_tutorial_has_an_example():
    assert {"gaussian_heights.py", "unrolled_rnn.py", "char_lstm.py", "dcgan.py",
            "style_transfer.py"} <= \
        set(EXAMPLES)
