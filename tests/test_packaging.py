"""What a packager and a new user meet: metadata, the version in one place,
`mxgen --version` without MXNet, licence files."""
import importlib.metadata
import os
import subprocess
import sys

import mxgen
from tests.conftest import REPO
from tests.test_bench_cli import HIDE

try:
    import tomllib
except ImportError:             # Python < 3.11
    tomllib = None


def test_version_is_stated_once_and_metadata_follows():
    meta = importlib.metadata.metadata("mxgen")
    assert meta["Version"] == mxgen.__version__
    assert meta["Requires-Python"] in (">=3.9,<3.12", "<3.12,>=3.9")
    assert meta["License-Expression"] == "Apache-2.0"
    requires = importlib.metadata.requires("mxgen")
    for name in ("numpy<1.24", "scipy", "gluoncv==0.10.5.post0"):
        assert any(r.replace(" ", "").startswith(name) for r in requires), (name, requires)
    assert any(r.startswith("mxnet") and "==1.9.1" in r for r in requires), requires


def test_pyproject_keeps_no_second_version():
    if tomllib is None:
        return
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    for name in project["license-files"]:
        assert os.path.getsize(os.path.join(REPO, name)) > 0, name


def test_version_answers_without_mxnet(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE.format(names={"mxnet"}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), REPO]))
    for flag in ("--version", "-V"):
        done = subprocess.run([sys.executable, "-m", "mxgen", flag], env=env, cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "mxgen " + mxgen.__version__
    # and with mxnet hidden, anything else says it is missing (the check can fail)
    done = subprocess.run([sys.executable, "-m", "mxgen", "info"], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "mxnet" in (done.stdout + done.stderr)


def test_the_benchmark_suite_is_found_where_pip_put_it():
    from mxgen.cli.bench import _bench_dir
    path = _bench_dir()
    assert os.path.isfile(os.path.join(path, "conftest.py"))
    assert os.path.isfile(os.path.join(path, "test_char_rnn.py"))


def test_public_api_type_checks(tmp_path):
    """mypy over the public modules (pyproject.toml, [tool.mypy]); mypy is in
    the test extra."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
