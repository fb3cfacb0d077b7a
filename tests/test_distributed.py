"""Distributed training on loopback: mxgen launch, dist_sync, dist_async, exact resume."""
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from mxgen import _env as mxgen_env
from mxgen._env import python_command
from tests.conftest import NIETZSCHE_HEAD, REPO

TEXT = ["train-text", "--data", NIETZSCHE_HEAD, "--max-chars", "6000", "--num-hidden", "16",
        "--num-embed", "8", "--seq-len", "10", "--batch-size", "8", "--epochs", "1",
        "--dropout", "0", "--rnn-impl", "fused", "--dropout-impl", "mxnet", "--seed", "3",
        "--no-progress", "--lr", "0.01"]
GAN = ["train-gan", "--data", "shapes", "--image-size", "32", "--ngf", "8", "--ndf", "8",
       "--batch-size", "16", "--max-images", "64", "--epochs", "1", "--fid-samples", "16",
       "--decode-workers", "0", "--seed", "3", "--no-progress"]


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


# ---- failures of one process end the whole run, bounded ------------------------------

def _pids_with(env_entry):
    """Pids of processes whose environment holds ``env_entry`` (b"K=V")."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    if env_entry in f.read().split(b"\0"):
                        pids.append(int(name))
            except OSError:
                pass
    return pids


def _tagged_env(tag, **extra):
    return dict(_env(), MXGEN_TEST_TAG=tag, **extra)


def _wait_for(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


LONG_TEXT = [a if a != "1" or i == 0 or TEXT[i - 1] != "--epochs" else "1000"
             for i, a in enumerate(TEXT)]


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_lost_worker_ends_the_run_within_the_timeout(tmp_path, how):
    """Worker 1 stops answering (SIGSTOP: a hung process or a machine gone
    quiet) or dies (SIGKILL) in the middle of training; the launcher ends
    the run with exit 2 naming it, within --timeout plus a few seconds, and
    no process is left behind."""
    import signal
    tag = "lost-%s-%d" % (how, os.getpid())
    launcher = subprocess.Popen(
        [sys.executable, "-m", "mxgen", "launch", "-n", "2", "-s", "1", "--timeout", "8", "--",
         sys.executable, "-m", "mxgen", *LONG_TEXT, "--kvstore", "dist_sync", "--out",
         str(tmp_path / "run")], env=_tagged_env(tag), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        worker = b"MXGEN_LAUNCH_INDEX=1"
        assert _wait_for(lambda: any(p in _pids_with(b"MXGEN_TEST_TAG=" + tag.encode())
                                     for p in _pids_with(worker)), 60)
        assert _wait_for(lambda: os.path.isfile(tmp_path / "run" / "metrics.jsonl"), 120)
        pid = next(p for p in _pids_with(worker)
                   if p in _pids_with(b"MXGEN_TEST_TAG=" + tag.encode()))
        os.kill(pid, signal.SIGSTOP if how == "stopped" else signal.SIGKILL)
        started = time.time()
        out, err = launcher.communicate(timeout=60)
        elapsed = time.time() - started
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 2, (out[-2000:], err[-2000:])
    expected = "no heartbeat for" if how == "stopped" else "killed by signal 9"
    assert "worker 1" in err and expected in err, err
    assert elapsed < 8 + 15, elapsed
    assert _wait_for(lambda: not _pids_with(b"MXGEN_TEST_TAG=" + tag.encode()), 15)


def test_a_failing_worker_tells_the_cluster(tmp_path):
    """Rank 0 alone writes metrics; its disk fills (an OSError, not an MXNet
    error): it exits at once with one line, and the launcher stops the
    others instead of leaving them waiting in the kvstore forever."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import errno, os\n"
        "if os.environ.get('DMLC_ROLE') == 'worker':\n"
        "    from mxgen.utils import metrics\n"
        "    def full(self, **record):\n"
        "        if self.enabled:\n"
        "            raise OSError(errno.ENOSPC, 'No space left on device', self.path)\n"
        "    metrics.MetricsLog.write = full\n")
    tag = "fail-%d" % os.getpid()
    env = _tagged_env(tag)
    env["PYTHONPATH"] = str(hook) + os.pathsep + env["PYTHONPATH"]
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "mxgen", "launch", "-n", "2", "-s", "1", "--",
                           sys.executable, "-m", "mxgen", *LONG_TEXT, "--kvstore", "dist_sync",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "mxgen: error: No space left on device" in proc.stdout, proc.stdout[-2000:]
    assert ", rank 0 died (exit status 2)" in proc.stderr, proc.stderr
    assert time.time() - started < 120
    assert _wait_for(lambda: not _pids_with(b"MXGEN_TEST_TAG=" + tag.encode()), 15)


def _planted(folder):
    """A json.py in ``folder`` that leaves a mark when imported."""
    mark = folder / "imported"
    (folder / "json.py").write_text("open(%r, 'w').write('ran')\nraise SystemExit(7)\n"
                                    % str(mark))
    return mark


@pytest.mark.parametrize("version", [(3, 9, 18), sys.version_info])
def test_python_command_keeps_the_working_folder_off_sys_path(tmp_path, monkeypatch, version):
    """Below Python 3.11 (no -P) the -c code drops the folder itself; the
    command is run by this interpreter either way, from a folder holding a
    json.py."""
    mark = _planted(tmp_path)
    monkeypatch.setattr(mxgen_env.sys, "version_info", version)
    cmd = python_command("import json; print('ok')")
    monkeypatch.undo()
    assert ("-P" in cmd) == (tuple(version) >= (3, 11))
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert not mark.exists()
    # the same code plainly, without python_command, does import it: the check can fail
    plain = subprocess.run([sys.executable, "-c", "import json"], cwd=tmp_path, timeout=60,
                           capture_output=True)
    assert plain.returncode == 7 and mark.exists()


def test_scheduler_and_servers_import_nothing_from_the_working_folder(tmp_path):
    """A run started from a folder holding a json.py: neither the scheduler
    nor the server (``python -c`` would put the folder first on sys.path)
    imports it."""
    mark = _planted(tmp_path)
    env = dict(_env(), PYTHONPATH=REPO)
    worker = ("import mxnet as mx; kv = mx.kv.create('dist_sync');"
              " kv.init(0, mx.nd.zeros((1,))); kv.push(0, mx.nd.ones((1,)))")
    mxgen = os.path.join(os.path.dirname(sys.executable), "mxgen")    # the console script
    proc = subprocess.run([mxgen, "launch", "-n", "1", "-s", "1", "--"] + python_command(worker),
                          cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not mark.exists()


def test_kernel_measurements_import_nothing_from_the_working_folder(tmp_path, monkeypatch):
    from mxgen import _calibrate
    mark = _planted(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert _calibrate.run_measure("mxgen._env:cpu_model", {}) is not None
    assert not mark.exists()


FAKE_SSH = '''#!%s
"""ssh as sshd behaves: the remote command runs in its own session with a
pipe as standard input, which closes when this client dies."""
import os, subprocess, sys, threading
args = sys.argv[1:]
host, remote = args[args.index("--") + 1:][:2]
read_end, write_end = os.pipe()
child = subprocess.Popen(["bash", "-c", remote], stdin=read_end, start_new_session=True)
os.close(read_end)
def pump():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        os.write(write_end, data)
threading.Thread(target=pump, daemon=True).start()
sys.exit(child.wait())
'''


def test_remote_processes_end_when_the_launcher_dies(tmp_path):
    """With --launcher ssh, SIGKILL the launcher: its ssh clients die, the
    connections close, and every remote process ends by itself."""
    import signal
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH % sys.executable)
    (bin_dir / "ssh").chmod(0o755)
    (tmp_path / "hosts").write_text("localhost\n")
    tag = "ssh-%d" % os.getpid()
    env = _tagged_env(tag, PATH=str(bin_dir) + os.pathsep + os.environ["PATH"])
    launcher = subprocess.Popen([sys.executable, "-m", "mxgen", "launch", "-n", "1", "-s", "1",
                                 "--launcher", "ssh", "--hosts", str(tmp_path / "hosts"), "--",
                                 sys.executable, "-c", "import time; time.sleep(300)"],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        remote = b"DMLC_ROLE=worker"
        assert _wait_for(lambda: [p for p in _pids_with(remote)
                                  if p in _pids_with(b"MXGEN_TEST_TAG=" + tag.encode())], 60)
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    assert _wait_for(lambda: not _pids_with(b"MXGEN_TEST_TAG=" + tag.encode()), 20), \
        _pids_with(b"MXGEN_TEST_TAG=" + tag.encode())


def test_ssh_commands_check_host_keys_and_never_read_a_host_as_an_option(tmp_path):
    from mxgen.cli.launch import ssh_command
    cmd = ssh_command("node-a", {"DMLC_ROLE": "worker"}, ["mxgen", "info"], "/work")
    assert "StrictHostKeyChecking=no" not in " ".join(cmd)
    assert cmd[cmd.index("--") + 1] == "node-a"


def test_child_environments_drop_path_entries_that_mean_the_working_folder():
    from mxgen._env import child_env
    env = child_env({"PYTHONPATH": "/a::relative:/b:", "HOME": "/root"}, prepend="/repo")
    assert env["PYTHONPATH"] == os.pathsep.join(["/repo", "/a", "/b"])
    assert "PYTHONPATH" not in child_env({"PYTHONPATH": ":."})
