"""Distributed training on loopback: mxgen launch, dist_sync, dist_async, exact resume."""
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from tests.conftest import NIETZSCHE_HEAD, REPO

TEXT = ["train-text", "--data", NIETZSCHE_HEAD, "--max-chars", "6000", "--num-hidden", "16",
        "--num-embed", "8", "--seq-len", "10", "--batch-size", "8", "--epochs", "1",
        "--dropout", "0", "--rnn-impl", "fused", "--dropout-impl", "mxnet", "--seed", "3",
        "--no-progress", "--lr", "0.01"]
GAN = ["train-gan", "--data", "shapes", "--image-size", "32", "--ngf", "8", "--ndf", "8",
       "--batch-size", "16", "--max-images", "64", "--epochs", "1", "--fid-samples", "16",
       "--num-workers", "0", "--seed", "3", "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"              # 4 processes share the cores
    return env


def _mxgen(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "mxgen"] + [str(a) for a in args],
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _launch(workers, *args, timeout=240):
    return _mxgen("launch", "-n", workers, "-s", 1, "--", sys.executable, "-m", "mxgen",
                  *args, timeout=timeout)


def _params(run_dir, name):
    from mxgen.utils.checkpoint import resolve
    arrays = mx.nd.load(os.path.join(resolve(str(run_dir), "latest"), name))
    return {k: v.asnumpy() for k, v in arrays.items()}


@pytest.mark.parametrize("family,args,params,kvstore", [
    ("text", TEXT + ["--max-steps", 4], "model.params", "dist_sync"),
    ("text", TEXT + ["--max-steps", 4], "model.params", "dist_device_sync"),
    ("gan", GAN + ["--max-steps", 3], "generator.params", "dist_sync"),
    ("samples", TEXT + ["--samples", "lines", "--buckets", 3, "--max-steps", 4],
     "model.params", "dist_sync"),
])
def test_two_workers_match_one_process_with_the_global_batch(tmp_path, family, args, params,
                                                             kvstore):
    """2 workers + 1 server, each with half the batch, end where one process
    with the whole batch over two devices ends."""
    dist = _launch(2, *args, "--kvstore", kvstore, "--out", tmp_path / "dist")
    assert dist.returncode == 0, dist.stdout[-3000:] + dist.stderr[-3000:]
    assert ", rank 0] " in dist.stdout          # output labelled with role and rank
    one = _mxgen(*args, "--ctx", "cpu:0,1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _params(tmp_path / "dist", params), _params(tmp_path / "one", params)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_distributed_resume_continues_exactly(tmp_path):
    straight = _launch(2, *TEXT, "--max-steps", 6, "--kvstore", "dist_sync",
                       "--out", tmp_path / "a")
    assert straight.returncode == 0, straight.stdout[-3000:]
    first = _launch(2, *TEXT, "--max-steps", 3, "--kvstore", "dist_sync", "--out", tmp_path / "b")
    assert first.returncode == 0, first.stdout[-3000:]
    second = _launch(2, *TEXT, "--max-steps", 3, "--kvstore", "dist_sync", "--resume",
                     "--out", tmp_path / "b")
    assert second.returncode == 0, second.stdout[-3000:]
    assert "resuming from" in second.stdout
    a, b = _params(tmp_path / "a", "model.params"), _params(tmp_path / "b", "model.params")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("args,params", [
    (TEXT + ["--max-steps", 5, "--lr-schedule", "cosine", "--clip", "0.05"], "model.params"),
    (GAN + ["--max-steps", 3], "generator.params"),
])
def test_dist_async_with_one_worker_matches_one_process(tmp_path, args, params):
    """Under dist_async the servers run the optimizer (with the rescaling,
    the clipped gradient and the cosine schedule); with one worker there is
    no staleness, so it must end where a local run ends."""
    dist = _launch(1, *args, "--kvstore", "dist_async", "--out", tmp_path / "dist")
    assert dist.returncode == 0, dist.stdout[-3000:] + dist.stderr[-3000:]
    one = _mxgen(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _params(tmp_path / "dist", params), _params(tmp_path / "one", params)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_dist_async_two_workers_train_and_resume_from_the_checkpoint(tmp_path):
    args = TEXT + ["--lr-schedule", "constant", "--max-steps", 3, "--kvstore", "dist_async",
                   "--out", tmp_path / "r"]
    first = _launch(2, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    saved = _params(tmp_path / "r", "model.params")
    second = _launch(2, *args, "--resume")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "optimizer's state is not in the checkpoint" in second.stdout
    after = _params(tmp_path / "r", "model.params")
    for key in saved:
        assert np.isfinite(after[key]).all(), key
        # the servers took the restored weights: 3 Adam steps of lr 0.01 move
        # each weight by at most ~0.03 (a fresh initialisation is far away)
        assert np.abs(after[key] - saved[key]).max() < 0.1, key
    assert any(np.abs(after[k] - saved[k]).max() > 1e-4 for k in saved)   # and trained on


def test_dist_async_refuses_a_schedule_the_servers_cannot_run(tmp_path):
    proc = _launch(1, *TEXT, "--max-steps", 1, "--kvstore", "dist_async",
                   "--out", tmp_path / "p")
    assert proc.returncode != 0
    assert "--lr-schedule plateau changes the rate after validation" in proc.stdout + proc.stderr


def _leftovers(marker):
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if marker in line and "ps -eww" not in line and "mxgen launch" not in line]


def test_a_dying_worker_stops_the_launch_promptly(tmp_path):
    """Worker 1 exits with status 3 after a second; the launcher names it,
    exits non-zero within 30 s and leaves no process behind."""
    marker = "mxgen-launch-test-%d" % os.getpid()
    script = ("import os, time, sys; sys.argv.append(%r); time.sleep(1)\n"
              "if os.environ['MXGEN_LAUNCH_INDEX'] == '1': os._exit(3)\n"
              "time.sleep(300)\n" % marker)
    start = time.time()
    proc = _mxgen("launch", "-n", 2, "--", sys.executable, "-c", script, marker, timeout=60)
    elapsed = time.time() - start
    assert proc.returncode == 2 and elapsed < 30, (proc.returncode, elapsed)
    assert "worker 1 died (exit status 3)" in proc.stderr, proc.stderr
    assert len(_leftovers(marker)) == 0


def test_launch_prints_ssh_commands(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("node-a\n# a comment\nnode-b\n")
    proc = _mxgen("launch", "-n", 2, "--launcher", "ssh", "--hosts", hosts, "--port", 9123,
                  "--print-commands", "--", "mxgen", "train-text", "--kvstore", "dist_sync")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + 2 + 2                      # scheduler, 2 servers, 2 workers
    assert lines[0].startswith("[scheduler] ssh ") and " node-a " in lines[0]
    assert "DMLC_ROLE=worker" in lines[-1] and " node-b " in lines[-1]
    assert "DMLC_PS_ROOT_URI=node-a" in lines[-1] and "DMLC_PS_ROOT_PORT=9123" in lines[-1]
    assert "mxgen train-text --kvstore dist_sync" in lines[-1]


@pytest.mark.parametrize("args,needle", [
    (["launch", "-n", 2, "--launcher", "ssh", "--hosts", "{tmp}/nohosts", "--", "true"],
     "hosts file not found"),
    (["launch", "-n", 2, "--launcher", "ssh", "--hosts", "{tmp}/empty", "--", "true"],
     "lists no host"),
    (["launch", "-n", 2, "--port", "{busy}", "--", "true"], "is in use"),
    (["launch", "-n", 0, "--", "true"], "--num-workers must be >= 1"),
    (["train-text", "--kvstore", "dist_sync", "--dry-run"], "start it with: mxgen launch"),
    (["train-text", "--kvstore", "nccl"], "invalid choice: 'nccl'"),
])
def test_launch_bad_input(tmp_path, args, needle):
    import socket
    (tmp_path / "empty").write_text("\n# nothing\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = [str(a).format(tmp=tmp_path, busy=busy.getsockname()[1]) for a in args]
        proc = _mxgen(*argv, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr and lines[-1].startswith("mxgen: error:"), proc.stderr
    assert needle in lines[-1], lines[-1]


def test_more_workers_than_the_batch_is_refused(tmp_path):
    proc = _launch(3, *GAN, "--kvstore", "dist_sync", "--out", tmp_path / "r", timeout=120)
    assert proc.returncode != 0
    assert "does not divide over 3 workers" in proc.stdout + proc.stderr


def test_a_killed_launcher_takes_its_processes_with_it(tmp_path):
    """Even a SIGKILLed launcher (no cleanup code runs) leaves nothing behind."""
    import signal
    marker = "mxgen-orphan-test-%d" % os.getpid()
    script = "import sys, time; sys.argv.append(%r); time.sleep(300)" % marker
    proc = subprocess.Popen([sys.executable, "-m", "mxgen", "launch", "-n", "2", "--",
                             sys.executable, "-c", script, marker], env=_env())
    try:
        deadline = time.time() + 30
        while len(_leftovers(marker)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(_leftovers(marker)) == 2          # both workers are up
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 10
    while _leftovers(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _leftovers(marker) == []


def test_horovod_without_horovod_is_a_clear_error(monkeypatch):
    from mxgen.distributed import Cluster
    from mxgen.errors import MXGenError
    monkeypatch.setitem(sys.modules, "horovod", None)          # as if not installed
    monkeypatch.setitem(sys.modules, "horovod.mxnet", None)
    with pytest.raises(MXGenError, match="needs Horovod built with MXNet support"):
        Cluster("horovod", [mx.cpu()])


def _horovod():
    """Whether Horovod with MXNet support is installed, without importing it
    here: horovod.mxnet loaded into this process crashes later MXNet calls."""
    import importlib.util
    try:
        return importlib.util.find_spec("horovod.mxnet") is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _horovod(), reason="Horovod is not installed (optional; see README,"
                                            " 'Across machines', for the install recipe)")
def test_horovod_two_processes_match_one_process(tmp_path):
    args = TEXT + ["--max-steps", "4"]
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    hvd = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo",
                          "--network-interface", "lo", sys.executable, "-m", "mxgen", *args,
                          "--kvstore", "horovod", "--out", str(tmp_path / "hvd")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert hvd.returncode == 0, hvd.stdout[-3000:] + hvd.stderr[-3000:]
    one = _mxgen(*args, "--ctx", "cpu:0,1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _params(tmp_path / "hvd", "model.params"), _params(tmp_path / "one", "model.params")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)
