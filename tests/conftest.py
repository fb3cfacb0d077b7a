"""Shared fixtures: real data from ../shared/data (skipped with a reason when
absent), a replayable seed, and a helper that runs the CLI in a subprocess."""
import os
import subprocess
import sys

import pytest

import mxgen  # noqa: F401  (sets OMP threads before mxnet is imported)
import mxnet as mx
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("MXGEN_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
NIETZSCHE = os.path.join(DATA, "text", "nietzsche.txt")
EMOJI = os.path.join(DATA, "images", "noto-emoji-72")


@pytest.fixture(scope="session", autouse=True)
def kernel_choice_cache(tmp_path_factory):
    """Kernel measurements ('auto', mxgen/_calibrate.py) go to a cache of this
    test session, not the user's: each shape is timed once per session."""
    path = str(tmp_path_factory.mktemp("mxgen-cache"))
    before = os.environ.get("MXGEN_CACHE_DIR")
    os.environ["MXGEN_CACHE_DIR"] = path
    yield path
    if before is None:
        os.environ.pop("MXGEN_CACHE_DIR", None)
    else:
        os.environ["MXGEN_CACHE_DIR"] = before


@pytest.fixture
def seed(request):
    """Seeds MXNet and numpy; the value is printed on failure for replay."""
    value = int(os.environ.get("MXGEN_TEST_SEED", "1234"))
    mx.random.seed(value)
    np.random.seed(value)
    return value


@pytest.fixture(scope="session")
def nietzsche_path():
    if not os.path.isfile(NIETZSCHE):
        pytest.skip("real corpus not found at %s (shared data is not checked out)" % NIETZSCHE)
    return NIETZSCHE


@pytest.fixture(scope="session")
def nietzsche(nietzsche_path):
    with open(nietzsche_path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="session")
def emoji_dir():
    if not os.path.isdir(EMOJI):
        pytest.skip("noto-emoji-72 not found at %s (shared data is not checked out)" % EMOJI)
    return EMOJI


def run_cli(*args, cwd=None, timeout=300):
    """Run ``python -m mxgen ARGS``; returns the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "mxgen"] + [str(a) for a in args],
                          cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
