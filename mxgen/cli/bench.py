"""Run the benchmark suite and print baseline vs candidate throughput.

Runs each ``benchmarks/test_*.py`` file with pytest-benchmark in its own fresh
process (so one case's memory and threads cannot slow the next), merges the
JSON (with machine info), prints one row per case, and with --compare fails
(exit 1) when a case's candidate throughput fell more than --threshold below
a saved run.

pytest and pytest-benchmark are ordinary dependencies of mxgen (the suite is
part of the product), so a plain ``pip install -e .`` runs it; should either
be missing anyway, ``mxgen bench`` says in one line what to install before
starting anything.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from ..errors import MXGenError
from ..fields import field
from .common import add_config_args, config_from_args

# import name -> what pip installs
NEEDED = {"pytest": "pytest", "pytest_benchmark": "pytest-benchmark"}


@dataclass
class BenchConfig:
    """``mxgen bench``'s settings."""
    quick: bool = field(False, "small settings (CI smoke run)", group="bench")
    json_path: Optional[str] = field(None, "save pytest-benchmark JSON here", group="bench",
                                     flags=("--json",))
    force: bool = field(False, "replace --json if it exists", group="bench")
    compare: Optional[str] = field(None, "compare with a saved run (its JSON); exit 1 on a"
                                         " regression", group="bench")
    threshold: float = field(0.25, "allowed relative drop with --compare", group="bench")
    select: Optional[str] = field(None, "run only the cases matching this pytest -k"
                                        " expression", group="bench", flags=("-k",))
    list_cases: bool = field(False, "list the cases (with -k: those it selects) and exit",
                             group="bench", flags=("--list",))
    suite: Optional[str] = field(None, "benchmark folder (default: the suite installed"
                                       " with mxgen)", group="bench")


CONFIG = BenchConfig


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def _bench_dir(suite=None):
    if suite:
        if not os.path.isdir(suite):
            raise MXGenError("benchmark folder not found: %s" % suite)
        return os.path.abspath(suite)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shipped = os.path.join(package, "benchmarks")       # installed from a wheel or sdist
    checkout = os.path.join(os.path.dirname(package), "benchmarks")   # pip install -e .
    for path in (shipped, checkout):
        if os.path.isfile(os.path.join(path, "conftest.py")):
            return path
    raise MXGenError("the benchmark suite is not installed (looked in %s and %s); reinstall"
                     " mxgen, or pass --suite DIR" % (shipped, checkout))


def _importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:             # a broken or partly removed install
        return False


def check_requirements():
    """One-line error naming what to install, before any case starts."""
    missing = [pip_name for module, pip_name in NEEDED.items() if not _importable(module)]
    if missing:
        raise MXGenError("mxgen bench needs %s, which %s not installed in this environment"
                         " (%s); install with: %s -m pip install %s"
                         % (" and ".join(missing), "is" if len(missing) == 1 else "are",
                            sys.executable, sys.executable, " ".join(missing)))


def _run_pytest(cmd, cwd):
    """Run pytest, echoing its output; returns ``(exit code, output lines)``."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines


def _failure_summary(lines):
    """The failing cases with their assertion or error, from pytest's short
    summary (``-rfE``), else pytest's own error lines."""
    failed = [ln[len("FAILED "):] if ln.startswith("FAILED ") else ln[len("ERROR "):]
              for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    if failed:
        return "; ".join(failed)
    errors = [ln.strip() for ln in lines if "rror" in ln]
    return errors[-1] if errors else "no error message; see the output above"


def list_cases(bench_dir, files, select=None):
    """The node ids of the selected cases (collected, not run)."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"] + \
        [os.path.join(bench_dir, f) for f in files]
    if select:
        cmd += ["-k", select]
    proc = subprocess.run(cmd, cwd=os.path.dirname(bench_dir), capture_output=True, text=True)
    if proc.returncode not in (0, 5):
        raise MXGenError("cannot collect the benchmark cases: %s"
                         % _failure_summary(proc.stdout.splitlines() + proc.stderr.splitlines()))
    return [ln for ln in proc.stdout.splitlines() if "::" in ln]


def load_results(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {b["name"]: b["extra_info"] for b in data["benchmarks"]}, data.get("machine_info", {})
    except FileNotFoundError:
        raise MXGenError("benchmark results not found: %s" % path) from None
    except (ValueError, KeyError, TypeError) as err:
        raise MXGenError("%s is not a pytest-benchmark JSON file: %s" % (path, err)) from None


def _rate(value):
    """Throughputs of any size with three significant digits at least."""
    return "%.0f" % value if value >= 100 else "%.3g" % value


def format_table(results):
    rows = [("case", "unit", "candidate/s", "baseline", "baseline/s", "ratio")]
    for name, info in results.items():
        baselines = sorted(k[len("baseline_"):-len("_per_s")] for k in info
                           if k.startswith("baseline_") and k.endswith("_per_s"))
        for i, base in enumerate(baselines):
            rows.append((name if i == 0 else "", info.get("unit", "") if i == 0 else "",
                         _rate(info["candidate_per_s"]) if i == 0 else "", base,
                         _rate(info["baseline_%s_per_s" % base]),
                         "%.2fx" % info["ratio_vs_%s" % base]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def compare(current, baseline, threshold):
    """Cases whose candidate throughput dropped more than ``threshold``."""
    regressions = []
    for name, info in current.items():
        if name in baseline and "candidate_per_s" in info and \
                "candidate_per_s" in baseline[name]:
            old, new = baseline[name]["candidate_per_s"], info["candidate_per_s"]
            if new < (1 - threshold) * old:
                regressions.append("%s: %.0f -> %.0f %s/s (%.0f%%)"
                                   % (name, old, new, info.get("unit", ""), 100 * (new / old - 1)))
    return regressions


def main(args):
    from ..utils.files import atomic_output, check_outputs
    args = config_from_args(CONFIG, args)[0]
    check_requirements()
    bench_dir = _bench_dir(args.suite)
    if args.compare and not os.path.isfile(args.compare):
        raise MXGenError("benchmark results not found: %s" % args.compare)
    if not args.threshold >= 0:
        raise MXGenError("--threshold must be >= 0, got %s" % args.threshold)
    check_outputs({args.json_path: "--json"}, inputs={args.compare: "--compare"}, force=args.force)
    files = sorted(f for f in os.listdir(bench_dir) if f.startswith("test_") and f.endswith(".py"))
    if args.list_cases:
        cases = list_cases(bench_dir, files, args.select)
        if not cases:
            raise MXGenError("no benchmark case selected")
        print("\n".join(os.path.relpath(os.path.join(os.path.dirname(bench_dir), c))
                        if not os.path.isabs(c) else c for c in cases))
        return 0
    if args.select:               # one collection instead of a process per unselected file
        chosen = {os.path.basename(c.split("::")[0])
                  for c in list_cases(bench_dir, files, args.select)}
        files = [name for name in files if name in chosen]
        if not files:
            raise MXGenError("no benchmark case selected")
    parts = tempfile.mkdtemp(prefix="mxgen-bench-")
    out = args.json_path or os.path.join(parts, "bench.json")
    merged = None
    for name in files:
        part = os.path.join(parts, name + ".json")
        cmd = [sys.executable, "-m", "pytest", os.path.join(bench_dir, name), "-vv", "-rfE",
               "--tb=short", "-p", "no:cacheprovider", "--benchmark-json", part,
               "--benchmark-columns=median,rounds"]
        if args.quick:
            cmd.append("--quick")
        if args.select:
            cmd += ["-k", args.select]
        code, lines = _run_pytest(cmd, os.path.dirname(bench_dir))
        if code == 5:                       # no case selected in this file
            continue
        if code != 0:
            raise MXGenError("benchmark case failed in %s: %s" % (name, _failure_summary(lines)))
        with open(part, encoding="utf-8") as f:
            data = json.load(f)
        os.unlink(part)
        if merged is None:
            merged = data
        else:
            merged["benchmarks"].extend(data["benchmarks"])
    if merged is None:
        raise MXGenError("no benchmark case selected")
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=1)
    results, machine = load_results(out)
    print()
    print("machine: %s, %s cores, OMP_NUM_THREADS=%s" % (
        machine.get("cpu", {}).get("brand_raw", machine.get("processor", "?")),
        os.cpu_count(), os.environ.get("OMP_NUM_THREADS")))
    peak = next((info for name, info in results.items() if "gemm_peak" in name), None)
    if peak:
        print("native kernels: %s; oneDNN held to: %s; matmul peak %.0f GFLOP/s (%s)" % (
            peak.get("native_isa"), peak.get("onednn_max_isa"), peak["peak"],
            ", ".join("%s %.0f" % (k, v) for k, v in peak.items()
                      if isinstance(v, float) and k != "peak")))
    print(format_table(results))
    print("results: %s" % out)
    if args.compare:
        regressions = compare(results, load_results(args.compare)[0], args.threshold)
        if regressions:
            print("REGRESSIONS beyond %.0f%%:\n  %s" % (100 * args.threshold,
                                                        "\n  ".join(regressions)))
            return 1
        print("no regression beyond %.0f%% against %s" % (100 * args.threshold, args.compare))
    return 0
