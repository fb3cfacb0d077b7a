"""Shared fixtures: slices of the real data committed under tests/fixtures
(every test but the quality checks on full corpora runs on a bare clone),
the full corpora from ../shared/data for those checks (skipped with a reason
when absent), a replayable seed, and a helper that runs the CLI in a
subprocess.

A guard keeps it that way: every test that does not ask for a full-corpus
fixture runs as if ../shared/data were an empty folder.  Opening, listing or
passing to a subprocess any path under it fails that test, on every machine,
whether the folder exists or not.
"""
import os
import subprocess
import sys

import pytest

import mxgen  # noqa: F401  (sets OMP threads before mxnet is imported)
import mxnet as mx
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("MXGEN_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
EMOJI = os.path.join(DATA, "images", "noto-emoji-72")
FIXTURES = os.path.join(REPO, "tests", "fixtures")
NIETZSCHE_HEAD = os.path.join(FIXTURES, "nietzsche-head.txt")
EMOJI_SAMPLE = os.path.join(FIXTURES, "noto-emoji-72")


# ---- the shared-data guard ---------------------------------------------------
QUALITY_FIXTURES = {"emoji_dir"}          # the only fixtures that may read ../shared/data
_GUARD = {"roots": [], "violations": []}
_WATCHED = {"open", "os.listdir", "os.scandir", "subprocess.Popen", "os.stat"}


def _under_guarded_root(value):
    try:
        path = os.path.abspath(os.fsdecode(value))
    except TypeError:
        return None
    for root in _GUARD["roots"]:
        if path == root or path.startswith(root + os.sep):
            return path
    return None


def _audit(event, args):
    if not _GUARD["roots"] or event not in _WATCHED or not args:
        return
    values = args[1] if event == "subprocess.Popen" else [args[0]]
    for value in (values if isinstance(values, (list, tuple)) else [values]):
        if isinstance(value, (str, bytes, os.PathLike)):
            path = _under_guarded_root(value)
            if path:
                _GUARD["violations"].append("%s %s" % (event, path))
                raise PermissionError("test reads shared data (%s) without a quality fixture"
                                      % path)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def shared_data_guard(request):
    """Fail any test that touches ../shared/data without asking for a
    full-corpus fixture (see QUALITY_FIXTURES)."""
    if QUALITY_FIXTURES & set(request.fixturenames):
        yield
        return
    _GUARD["roots"], _GUARD["violations"] = [os.path.abspath(DATA)], []
    try:
        yield
    finally:
        _GUARD["roots"] = []
    if _GUARD["violations"]:
        pytest.fail("this test depends on the shared data folder (%s) but is not a quality"
                    " check: use the fixtures under tests/fixtures. Accesses: %s"
                    % (DATA, "; ".join(_GUARD["violations"][:3])))


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
    """The first 143 KB of nietzsche.txt (tests/fixtures, public domain): every
    test reads at most its first 60,000 characters or 2,000 lines, which are
    byte-for-byte the full file's."""
    return NIETZSCHE_HEAD


@pytest.fixture(scope="session")
def nietzsche(nietzsche_path):
    with open(nietzsche_path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="session")
def emoji_sample_dir():
    """40 noto-emoji PNGs (tests/fixtures, Apache-2.0)."""
    return EMOJI_SAMPLE


@pytest.fixture(scope="session")
def emoji_dir():
    """The full noto-emoji-72 set, for quality checks on real images only."""
    if not os.path.isdir(EMOJI):
        pytest.skip("quality check on the full noto-emoji-72 set, not found at %s (shared data"
                    " is not checked out)" % EMOJI)
    return EMOJI


def file_tree(path):
    """``{relative path: sha256}`` of every file under ``path`` (mxgen's own
    run-folder lock left out: it holds the pid of its last holder)."""
    import hashlib
    found = {}
    for dirpath, _, files in os.walk(path):
        for name in files:
            if name == ".mxgen.lock":
                continue
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


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
