"""The documentation site builds, warnings as errors: the API reference
from the docstrings and the README, BENCHMARKS and CHANGELOG pages."""
import os
import subprocess
import sys

from tests.conftest import REPO


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", "-d", str(tmp_path / "doctrees"), os.path.join(REPO, "docs"),
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("mxgen.generation.generate", "mxgen.models.load", "mxgen.train.text.train_text",
                 "TextTrainConfig", "mxgen.stylize.stylize_optim"):
        assert name in api, name
    assert "Quick start: two commands" in (out / "readme.html").read_text(encoding="utf-8")
