"""Distributed char-LSTM training on loopback: what the kvstore costs.

One process with the global batch, against ``mxgen launch`` with 2 workers
and 1 server (``dist_sync``) each taking half of it, and against one process
with the per-worker half batch and a worker's share of the threads (what one
worker computes, without the kvstore).  On a 2-core machine the workers
share the cores, so the ratio is no speed-up to expect: the numbers to read
are the bytes pushed and pulled per step and the time per step above the
half-batch process.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from conftest import REPO, cpu_model, native_isa


def _median_tokens_per_s(run_dir):
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    speeds = [r["tokens_per_s"] for r in records if r.get("kind") == "train"][1:]   # warm-up
    return float(np.median(speeds))


def _run(args, workers, out, threads):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mxgen"]
    if workers > 1:
        cmd += ["launch", "-n", str(workers), "-s", "1", "--", sys.executable, "-m", "mxgen"]
    cmd += args + ["--out", out] + (["--kvstore", "dist_sync"] if workers > 1 else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return _median_tokens_per_s(out)


def test_dist_sync_two_workers(benchmark, quick, text_corpus):
    seq, batch, steps = (50, 16, 30) if quick else (100, 32, 120)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text_corpus[:400000])
        args = ["train-text", "--data", corpus, "--num-hidden", "256", "--num-embed", "64",
                "--seq-len", str(seq), "--epochs", "1", "--max-steps", str(steps),
                "--log-interval", "10", "--no-progress", "--dropout", "0.2",
                "--rnn-impl", "fused", "--dropout-impl", "mxnet"]
        cores = os.cpu_count() or 1
        one = _run(args + ["--batch-size", str(batch)], 1, os.path.join(tmp, "one"), cores)
        # a worker's own share of the work, with a worker's threads: what a
        # worker would take without the kvstore
        half = _run(args + ["--batch-size", str(batch // 2)], 1, os.path.join(tmp, "half"),
                    max(1, cores // 2))
        dist = _run(args + ["--batch-size", str(batch)], 2, os.path.join(tmp, "dist"),
                    max(1, cores // 2))
        import mxnet as mx
        from mxgen.utils.checkpoint import resolve
        arrays = mx.nd.load(os.path.join(resolve(os.path.join(tmp, "one"), "latest"),
                                         "model.params"))
        params = sum(a.size for a in arrays.values())      # every one is trained and summed
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    tokens = seq * batch
    info = benchmark.extra_info
    info.update(unit="tokens", candidate_per_s=round(dist, 1),
                baseline_one_process_per_s=round(one, 1),
                ratio_vs_one_process=round(dist / one, 3),
                baseline_one_process_half_batch_per_s=round(half, 1),
                ratio_vs_one_process_half_batch=round(dist / half, 3),
                model="lstm 2x256, embed 64", shape="seq %d x global batch %d" % (seq, batch),
                workers=2, servers=1, kvstore="dist_sync", device="cpu (%s)" % cpu_model(),
                native_isa=native_isa(), threads_per_worker=max(1, (os.cpu_count() or 1) // 2),
                mb_pushed_per_worker_step=round(4 * params / 1e6, 2),
                mb_pulled_per_worker_step=round(4 * params / 1e6, 2),
                ms_per_step_one_process=round(1e3 * tokens / one, 1),
                ms_per_step_two_workers=round(1e3 * tokens / dist, 1),
                ms_per_step_half_batch=round(1e3 * tokens / 2 / half, 1),
                overhead_ms_per_step=round(1e3 * (tokens / dist - tokens / 2 / half), 1))
