"""``mxgen bench`` as a new user meets it: what it needs, listing, failures."""
import os
import subprocess
import sys

from tests.conftest import REPO

# Put first on sys.path, this sitecustomize makes the interpreter (and the
# pytest processes it starts, which inherit PYTHONPATH) behave as if a
# package were not installed.
HIDE = '''
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None
sys.meta_path.insert(0, _Hide())
'''


def _bench(tmp_path, *args, hide=()):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE.format(names=set(hide)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), REPO, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "mxgen", "bench"] + [str(a) for a in args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_without_pytest_benchmark_it_says_what_to_install(tmp_path):
    proc = _bench(tmp_path, "--quick", hide=("pytest_benchmark",))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "mxgen bench needs pytest-benchmark" in lines[0]
    assert "pip install pytest-benchmark" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_without_either_it_names_both(tmp_path):
    proc = _bench(tmp_path, "--list", hide=("pytest", "pytest_benchmark", "_pytest"))
    assert proc.returncode == 2
    assert "needs pytest and pytest-benchmark, which are not installed" in proc.stderr
    assert "pip install pytest pytest-benchmark" in proc.stderr


def test_list_shows_the_cases_and_k_selects(tmp_path):
    every = _bench(tmp_path, "--list")
    assert every.returncode == 0, every.stderr
    cases = every.stdout.split()
    assert "benchmarks/test_peak.py::test_gemm_peak" in cases
    assert any(c.startswith("benchmarks/test_char_rnn.py::") for c in cases)
    some = _bench(tmp_path, "--list", "-k", "gemm_peak")
    assert some.returncode == 0, some.stderr
    assert some.stdout.split() == ["benchmarks/test_peak.py::test_gemm_peak"]


def test_a_failing_case_shows_its_assertion(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_fails.py").write_text(
        "def test_ok(benchmark):\n"
        "    benchmark(sum, [1, 2])\n\n"
        "def test_wrong(benchmark):\n"
        "    total = benchmark(sum, [1, 2])\n"
        "    assert total == 4, 'the sum came out as %d' % total\n")
    proc = _bench(tmp_path, "--suite", suite)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert "benchmark case failed in test_fails.py" in error
    assert "test_wrong" in error and "the sum came out as 3" in error
    assert "test_ok" not in error
