"""Run the benchmark suite and print baseline vs candidate throughput.

Runs each ``benchmarks/test_*.py`` file with pytest-benchmark in its own fresh
process (so one case's memory and threads cannot slow the next), merges the
JSON (with machine info), prints one row per case, and with --compare fails
(exit 1) when a case's candidate throughput fell more than --threshold below
a saved run.
"""
import json
import os
import subprocess
import sys
import tempfile

from ..errors import MXGenError


def get_parser(parser):
    parser.add_argument("--quick", action="store_true", help="small settings (CI smoke run)")
    parser.add_argument("--json", default=None, help="save pytest-benchmark JSON here")
    parser.add_argument("--compare", default=None, metavar="BASELINE_JSON",
                        help="compare with a saved run; exit 1 on a regression")
    parser.add_argument("--threshold", type=float, default=0.25,
                        help="allowed relative drop with --compare (default: %(default)s)")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    return parser


def _bench_dir():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(repo, "benchmarks")
    if not os.path.isdir(path):
        raise MXGenError("benchmarks/ not found beside the package (%s); run from a source"
                         " checkout installed with pip install -e ." % repo)
    return path


def load_results(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {b["name"]: b["extra_info"] for b in data["benchmarks"]}, data.get("machine_info", {})
    except FileNotFoundError:
        raise MXGenError("benchmark results not found: %s" % path) from None
    except (ValueError, KeyError, TypeError) as err:
        raise MXGenError("%s is not a pytest-benchmark JSON file: %s" % (path, err)) from None


def format_table(results):
    rows = [("case", "unit", "candidate/s", "baseline", "baseline/s", "ratio")]
    for name, info in results.items():
        baselines = sorted(k[len("baseline_"):-len("_per_s")] for k in info
                           if k.startswith("baseline_") and k.endswith("_per_s"))
        for i, base in enumerate(baselines):
            rows.append((name if i == 0 else "", info.get("unit", "") if i == 0 else "",
                         "%.0f" % info["candidate_per_s"] if i == 0 else "", base,
                         "%.0f" % info["baseline_%s_per_s" % base],
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
    bench_dir = _bench_dir()
    out = args.json or os.path.join(tempfile.mkdtemp(prefix="mxgen-bench-"), "bench.json")
    merged = None
    files = sorted(f for f in os.listdir(bench_dir) if f.startswith("test_") and f.endswith(".py"))
    for name in files:
        part = out + "." + name + ".json"
        cmd = [sys.executable, "-m", "pytest", os.path.join(bench_dir, name), "-q",
               "-p", "no:cacheprovider", "--benchmark-json", part,
               "--benchmark-columns=median,rounds"]
        if args.quick:
            cmd.append("--quick")
        if args.select:
            cmd += ["-k", args.select]
        proc = subprocess.run(cmd, cwd=os.path.dirname(bench_dir))
        if proc.returncode == 5:            # no case selected in this file
            continue
        if proc.returncode != 0:
            raise MXGenError("benchmark run failed in %s (pytest exit %d)" % (name, proc.returncode))
        with open(part, encoding="utf-8") as f:
            data = json.load(f)
        os.unlink(part)
        if merged is None:
            merged = data
        else:
            merged["benchmarks"].extend(data["benchmarks"])
    if merged is None:
        raise MXGenError("no benchmark case selected")
    with open(out, "w", encoding="utf-8") as f:
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
