"""The benchmark suite's quick mode, a few cases of it: the JSON report, the
ratios beside each throughput and the comparison with an earlier run.  Every
case of the quick mode runs in CI from the installed wheel
(scripts/check-wheel.sh), outside this test suite's time; that every case is
collected is checked by tests/test_bench_cli.py.  Throughput numbers are not
asserted here: machines are noisy."""
import json

CASES = "bptt or unrolled or sampler_op"


def test_bench_quick_runs_and_reports_ratios(cli, tmp_path):
    out = tmp_path / "bench.json"
    proc = cli("bench", "--quick", "--json", out, "-k", CASES, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ratio" in proc.stdout
    data = json.loads(out.read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert {"test_unrolled_step", "test_bptt_batches"} <= names
    from mxgen import _native
    if _native.available():
        assert {"test_sampler_op[1]", "test_sampler_op[64]"} <= names
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        assert info["native_isa"] and info["device"]
        assert info["candidate_per_s"] > 0
        assert any(k.startswith("ratio_vs_") for k in info)
    # comparing a run with itself finds no regression
    # a generous threshold: this checks the comparison runs, not the noisy machine speed
    same = cli("bench", "--quick", "--compare", out, "--threshold", "0.9", "-k", "bptt",
               timeout=600)
    assert same.returncode == 0 and "no regression" in same.stdout, same.stdout + same.stderr
