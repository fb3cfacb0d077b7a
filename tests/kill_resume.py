"""SIGKILL training runs at random moments, resume them, compare bit for bit.

For each family (``train-text``, ``train-gan``) this script:

1. runs a small training job to the end, uninterrupted (the reference);
2. runs the same job again, SIGKILLing it (and its process group) at
   ``--kills`` moments: half drawn at random over the job's running time,
   half a random 0-4 ms after a checkpoint write has begun (the job
   checkpoints every step or two); after each kill it checks that the ``latest`` checkpoint
   (if any) verifies against its manifest, then restarts with ``--resume``
   (from scratch with ``--overwrite`` if no checkpoint was written yet);
3. lets the last restart finish and compares every array of the final
   checkpoint (parameters, optimizer states, recurrent states / fixed noise)
   with the reference's, bit for bit.

Usage::

    python tests/kill_resume.py                  # 20 kills per family (a few minutes)
    python tests/kill_resume.py --kills 3 --families text

Prints one line per kill and a summary; exits 1 if any run differs or any
checkpoint was unreadable.  ``tests/train/test_kill_resume.py`` runs a
3-kill version in the test suite.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_TEXT = os.path.join(REPO, "tests", "fixtures", "nietzsche-head.txt")

JOBS = {
    "text": ["train-text", "--data", FIXTURE_TEXT, "--max-chars", "6000", "--num-hidden", "32",
             "--num-embed", "16", "--seq-len", "20", "--batch-size", "8", "--epochs", "2",
             "--dropout", "0.3", "--save-every", "2", "--log-interval", "5", "--seed", "7",
             "--rnn-impl", "fused", "--dropout-impl", "mxnet"],
    "gan": ["train-gan", "--data", "shapes", "--image-size", "32", "--ngf", "8", "--ndf", "8",
            "--batch-size", "16", "--max-images", "192", "--epochs", "2", "--fid-samples", "32",
            "--decode-workers", "0", "--save-every", "1", "--log-interval", "4", "--seed", "7"],
}


def _command(family, out, resume):
    """Resume from the latest checkpoint; without one, start again, replacing
    (moving aside) what a run killed before its first checkpoint left."""
    cmd = [sys.executable, "-m", "mxgen"] + JOBS[family] + ["--out", out, "--no-progress"]
    if resume:
        return cmd + ["--resume"]
    return cmd + (["--overwrite"] if os.path.exists(out) else [])


def _writing(run_dir):
    parent = os.path.join(run_dir, "checkpoints")
    try:
        return any(n.startswith(".tmp-ckpt-") for n in os.listdir(parent))
    except FileNotFoundError:
        return False


def _run(cmd, env, kill_after=None, run_dir=None, extra=0.0):
    """Run ``cmd`` and SIGKILL its process group after ``kill_after`` seconds,
    or (with ``run_dir``) ``extra`` seconds after it starts writing a
    checkpoint there.  Returns ``(finished, returncode, stderr tail)``."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        start = time.time()
        while proc.poll() is None:
            if run_dir and _writing(run_dir) and time.time() - start > 0.5:
                time.sleep(extra)
                break
            if kill_after is not None and time.time() - start >= kill_after:
                break
            time.sleep(0.0005 if run_dir else 0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return False, None, ""
        err.seek(0)
        return True, proc.returncode, err.read().decode(errors="replace")[-2000:]


def _final_arrays(run_dir):
    import mxnet as mx
    from mxgen.utils import checkpoint as ckpt
    ckpt_dir = ckpt.resolve(run_dir, prefer="latest")
    arrays = {}
    for name in sorted(os.listdir(ckpt_dir)):
        if name.endswith((".params", ".nd")):
            for key, value in mx.nd.load(os.path.join(ckpt_dir, name)).items():
                arrays["%s:%s" % (name, key)] = value.asnumpy()
    return ckpt_dir, arrays


def _checkpoint_readable(run_dir):
    """None if there is no checkpoint yet, else whether 'latest' verifies."""
    from mxgen.errors import MXGenError
    from mxgen.utils import checkpoint as ckpt
    if not os.path.exists(os.path.join(run_dir, "latest")):
        return None
    try:
        ckpt.read_manifest(ckpt.resolve(run_dir, prefer="latest"))
        return True
    except MXGenError as err:
        print("    unreadable checkpoint: %s" % err)
        return False


def _run_finished(run_dir):
    """Whether the latest checkpoint already ends the run (a kill landed
    after its last checkpoint, e.g. while it printed the closing sample)."""
    from mxgen.utils import checkpoint as ckpt
    try:
        ckpt_dir = ckpt.resolve(run_dir, prefer="latest")
        progress = ckpt.read_json(ckpt_dir, "progress.json")
        return progress["epoch"] >= ckpt.read_json(ckpt_dir, "config.json")["train"]["epochs"]
    except Exception:                 # no checkpoint yet
        return False


def kill_and_resume(family, kills, workdir, rng, env, log=print):
    """Returns a dict of counts; ``identical`` is the verdict."""
    import numpy as np
    reference = os.path.join(workdir, family + "-reference")
    start = time.time()
    finished, code, err = _run(_command(family, reference, False), env)
    duration = time.time() - start
    if code != 0:
        raise RuntimeError("reference %s run failed:\n%s" % (family, err))
    log("%s: reference run took %.1f s" % (family, duration))
    ref_dir, ref = _final_arrays(reference)
    run_dir = os.path.join(workdir, family + "-killed")
    counts = {"kills": 0, "in_checkpoint_write": 0, "before_first_checkpoint": 0,
              "unreadable": 0, "identical_kills": 0, "chains": 0}
    chain_kills = 0
    while True:
        if _run_finished(run_dir):
            # compare this chain's end with the reference; its kills count as identical
            # only if every array of the final checkpoint is
            got_dir, got = _final_arrays(run_dir)
            same = (ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref)
                    and os.path.basename(ref_dir).split(".")[0]
                    == os.path.basename(got_dir).split(".")[0])
            counts["identical_kills"] += chain_kills if same else 0
            counts["chains"] += 1
            log("  chain %d: %d kills, final checkpoint %s" % (
                counts["chains"], chain_kills, "identical" if same else "DIFFERENT"))
            shutil.rmtree(run_dir)
            chain_kills = 0
            if counts["kills"] >= kills:
                break
            continue
        cmd = _command(family, run_dir, os.path.exists(os.path.join(run_dir, "latest")))
        # odd kills at a random moment, even ones inside a checkpoint write
        aim_at_write = counts["kills"] % 2 == 1
        delay = None if counts["kills"] >= kills else rng.uniform(0.3, duration)
        finished, code, err = _run(cmd, env, kill_after=delay,
                                   run_dir=run_dir if aim_at_write and delay else None,
                                   extra=rng.uniform(0, 0.004))
        if finished:
            if code != 0:
                raise RuntimeError("%s run failed:\n%s" % (family, err))
            continue
        counts["kills"] += 1
        chain_kills += 1
        parent = os.path.join(run_dir, "checkpoints")
        in_write = os.path.isdir(parent) and any(n.startswith(".tmp-ckpt-")
                                                 for n in os.listdir(parent))
        readable = _checkpoint_readable(run_dir)
        counts["in_checkpoint_write"] += in_write
        counts["before_first_checkpoint"] += readable is None
        counts["unreadable"] += readable is False
        log("  kill %2d%s%s%s" % (counts["kills"], " in a write" if aim_at_write
                                  else " at %5.2f s" % delay,
                                           " (during a checkpoint write)" if in_write else "",
                                           " (no checkpoint yet)" if readable is None else ""))
    counts["identical"] = counts["identical_kills"] == counts["kills"]
    counts["arrays"] = len(ref)
    log("%s: %d of %d killed-and-resumed runs identical to the uninterrupted one (%d arrays"
        " each; %d kills during a checkpoint write, %d before the first checkpoint);"
        " %d unreadable checkpoints"
        % (family, counts["identical_kills"], counts["kills"], counts["arrays"],
           counts["in_checkpoint_write"], counts["before_first_checkpoint"],
           counts["unreadable"]))
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per family (default: 20)")
    parser.add_argument("--families", default="text,gan", help="text,gan (default: both)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", default=None, help="keep the runs here")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mxgen-kill-")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rng = random.Random(args.seed)
    results = {}
    for family in args.families.split(","):
        results[family] = kill_and_resume(family, args.kills, workdir, rng, env)
    ok = all(r["identical"] and r["unreadable"] == 0 for r in results.values())
    total = sum(r["kills"] for r in results.values())
    same = sum(r["identical_kills"] for r in results.values())
    print("summary: %d of %d killed-and-resumed runs identical, %d unreadable checkpoints"
          % (same, total, sum(r["unreadable"] for r in results.values())))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
