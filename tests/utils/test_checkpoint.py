"""The checkpoint format every family shares: atomic, data only, resumable."""
import errno
import json
import os
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.errors import MXGenError
from mxgen.utils import checkpoint as ckpt
from mxgen.utils.metrics import MetricsLog


def _write(run_dir, step, payload, point=True):
    with ckpt.CheckpointWriter(str(run_dir), step) as writer:
        writer.write_json("config.json", {"family": "test", "payload": payload})
    if point:
        writer.point("latest")
    return writer.final_dir


def test_resaving_a_step_never_replaces_the_pointed_directory(tmp_path):
    first = _write(tmp_path, 10, "a")
    second = _write(tmp_path, 10, "b", point=False)   # a crash before point(): 'latest' still valid
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert ckpt.resolve(str(tmp_path), "latest") == first
    assert ckpt.read_json(first, "config.json")["payload"] == "a"
    third = _write(tmp_path, 10, "c")
    assert ckpt.resolve(str(tmp_path), "latest") == third
    assert [os.path.basename(p) for p in (first, second, third)] == \
        ["ckpt-00000010", "ckpt-00000010.r1", "ckpt-00000010.r2"]


def test_prune_keeps_newest_and_pointed(tmp_path):
    dirs = [_write(tmp_path, step, step) for step in (1, 2, 2, 3)]
    with ckpt.CheckpointWriter(str(tmp_path), 4) as writer:
        writer.write_json("config.json", {})
    writer.point("latest")
    writer.prune()
    left = sorted(os.listdir(tmp_path / "checkpoints"))
    assert left == ["ckpt-00000003", "ckpt-00000004"], left
    assert not os.path.exists(dirs[0])


def test_leftover_temporary_directories_are_removed(tmp_path):
    _write(tmp_path, 1, "a")
    parent = tmp_path / "checkpoints"
    (parent / ".tmp-ckpt-killed").mkdir()
    (parent / ".tmp-ckpt-killed" / "model.params").write_bytes(b"half")
    (parent / ".trash-old").mkdir()
    _write(tmp_path, 2, "b")
    assert sorted(os.listdir(parent)) == ["ckpt-00000001", "ckpt-00000002"]


def test_a_failing_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = _write(tmp_path, 5, "good")
    real_dump = json.dump

    def disk_full(obj, f, **kw):
        if isinstance(obj, dict) and obj.get("payload") == "doomed":
            f.write('{"payload": "doo')
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_dump(obj, f, **kw)

    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(MXGenError, match="could not write the checkpoint of step 6.*No space"
                                         " left on device.*previous checkpoint is untouched"):
        _write(tmp_path, 6, "doomed")
    monkeypatch.undo()
    assert ckpt.resolve(str(tmp_path), "latest") == good
    ckpt.read_manifest(good)
    assert ckpt.read_json(good, "config.json")["payload"] == "good"
    assert os.listdir(tmp_path / "checkpoints") == ["ckpt-00000005"]   # no temp left behind


def _short_writes(monkeypatch, keep=0.5):
    """mx.nd.save as on a full disk where the last flush fails unreported:
    the file is written, then loses its tail."""
    real_save = mx.nd.save

    def save(path, data):
        real_save(path, data)
        with open(path, "r+b") as f:
            f.truncate(int(os.path.getsize(path) * keep))
    monkeypatch.setattr(mx.nd, "save", save)


def test_a_short_params_file_is_never_committed(tmp_path, monkeypatch):
    net = gluon.nn.Dense(3, in_units=2)
    net.initialize()

    def write(step):
        with ckpt.CheckpointWriter(str(tmp_path), step) as writer:
            ckpt.save_parameters(net, writer.path("model.params"))
            writer.write_json("config.json", {"family": "test"})
        writer.point("latest")
        return writer.final_dir

    good = write(1)
    _short_writes(monkeypatch)
    with pytest.raises(MXGenError, match="could not write the checkpoint of step 2.*did not read"
                                         " back as written.*previous checkpoint is untouched"):
        write(2)
    monkeypatch.undo()
    assert ckpt.resolve(str(tmp_path), "latest") == good
    assert os.listdir(tmp_path / "checkpoints") == ["ckpt-00000001"]
    ckpt.read_manifest(good)
    ckpt.load_parameters(net, os.path.join(good, "model.params"), mx.cpu())


def test_a_short_write_in_training_stops_with_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                      nietzsche_path):
    """Through the training loop: a checkpoint whose files do not read back
    is abandoned; the run stops with the error; the last good checkpoint
    stays pointed to and resumes."""
    from mxgen.train import common
    from mxgen.train.text import TextTrainConfig, train_text
    cfg = dict(data=nietzsche_path, out=str(tmp_path / "run"), max_chars=3000, num_hidden=8,
               num_embed=4, seq_len=10, batch_size=4, save_every=2, max_steps=6, epochs=1,
               progress=False, rnn_impl="fused", dropout_impl="mxnet")
    real_save = common.Run.save
    calls = []

    def save(run, point_best=False):
        calls.append(run.step)
        if len(calls) == 2:
            _short_writes(monkeypatch, keep=0.9)
        return real_save(run, point_best)
    monkeypatch.setattr(common.Run, "save", save)
    with pytest.raises(MXGenError, match="could not write the checkpoint of step 4"):
        train_text(TextTrainConfig(**cfg), log=lambda *_: None)
    monkeypatch.undo()
    latest = ckpt.resolve(cfg["out"], "latest")
    assert os.path.basename(latest) == "ckpt-00000002"
    result = train_text(TextTrainConfig(**dict(cfg, resume=True)), log=lambda *_: None,
                        explicit={"resume"})
    assert result["step"] == 8


def test_checkpoints_order_by_number_not_by_text(tmp_path):
    parent = tmp_path / "checkpoints"
    parent.mkdir()
    names = ["ckpt-99999999", "ckpt-100000000", "ckpt-99999999.r1", "ckpt-100000000.r10",
             "ckpt-100000000.r9", "ckpt-junk"]
    assert sorted(names, key=ckpt._ckpt_order) == [
        "ckpt-junk", "ckpt-99999999", "ckpt-99999999.r1", "ckpt-100000000",
        "ckpt-100000000.r9", "ckpt-100000000.r10"]
    for name in names:
        (parent / name).mkdir()
    with ckpt.CheckpointWriter(str(tmp_path), 100000001) as writer:
        writer.write_json("config.json", {})
    writer.point("latest")
    writer.prune()
    # the two newest BY NUMBER stay; a folder that is not a checkpoint is not touched
    assert sorted(os.listdir(parent)) == ["ckpt-100000000.r10", "ckpt-100000001", "ckpt-junk"]


@pytest.mark.parametrize("name", ["../../etc/hostname", "sub/model.params", "..", ""])
def test_manifest_names_outside_the_checkpoint_are_refused(tmp_path, name):
    good = _write(tmp_path, 1, "a")
    path = os.path.join(good, "MANIFEST.json")
    manifest = json.load(open(path))
    manifest["files"][name] = {"bytes": 1, "sha256": "0"}
    json.dump(manifest, open(path, "w"))
    with pytest.raises(MXGenError, match="which is not a file of the checkpoint folder"):
        ckpt.read_manifest(good)


@pytest.mark.parametrize("target", ["..", "../..", "/etc", "checkpoints/../..",
                                    "checkpoints/not-a-ckpt"])
def test_pointers_outside_the_run_are_refused(tmp_path, target):
    _write(tmp_path, 1, "a")
    (tmp_path / "checkpoints" / "not-a-ckpt").mkdir()
    (tmp_path / "latest").write_text(json.dumps({"dir": target}))
    with pytest.raises(MXGenError, match="is not a checkpoint of this run"):
        ckpt.resolve(str(tmp_path), "latest")


def _trained_trainer(ctxs, update_on_kvstore, steps=3, states=None, seed=0):
    mx.random.seed(seed)
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize(mx.init.Xavier(), ctx=ctxs)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1},
                            kvstore="device" if len(ctxs) > 1 else None,
                            update_on_kvstore=update_on_kvstore)
    if states:
        for name, p in net.collect_params().items():
            p.set_data(states["params"][name.split("_", 1)[1]])
        ckpt.load_trainer(trainer, states["dir"], "trainer")
    x = mx.nd.arange(24).reshape((8, 3)) / 24
    for _ in range(steps):
        with autograd.record():
            losses = [(net(d) ** 2).sum() for d in gluon.utils.split_and_load(x, ctxs)]
        autograd.backward(losses)
        trainer.step(8)
    return net, trainer


@pytest.mark.parametrize("devices,update_on_kvstore", [(1, None), (2, False), (2, True)])
def test_trainer_states_round_trip_without_pickle(tmp_path, monkeypatch, devices,
                                                  update_on_kvstore):
    """3 steps, save, 3 more == 6 steps straight; and nothing is unpickled."""
    ctxs = [mx.cpu(i) for i in range(devices)]
    straight, _ = _trained_trainer(ctxs, update_on_kvstore, steps=6)
    net, trainer = _trained_trainer(ctxs, update_on_kvstore, steps=3)
    with ckpt.CheckpointWriter(str(tmp_path), 3) as writer:
        ckpt.save_trainer(trainer, writer, "trainer")
    files = sorted(os.listdir(writer.final_dir))
    assert files == ["MANIFEST.json", "trainer.states.json", "trainer.states.nd"]
    for name in files:
        assert not open(os.path.join(writer.final_dir, name), "rb").read(2).startswith(b"\x80")
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    params = {name.split("_", 1)[1]: p.data(ctxs[0]).copy()
              for name, p in net.collect_params().items()}
    resumed, _ = _trained_trainer(ctxs, update_on_kvstore, steps=3,
                                  states={"dir": writer.final_dir, "params": params})
    for (_, a), (_, b) in zip(sorted(straight.collect_params().items()),
                              sorted(resumed.collect_params().items())):
        for ctx in ctxs:
            np.testing.assert_allclose(a.data(ctx).asnumpy(), b.data(ctx).asnumpy(),
                                       rtol=1e-6, atol=1e-7)


def test_pickled_trainer_states_are_refused(tmp_path):
    net, trainer = _trained_trainer([mx.cpu()], None, steps=1)
    with ckpt.CheckpointWriter(str(tmp_path), 1) as writer:
        trainer.save_states(writer.path("trainer.states"))      # Gluon's pickle
    with pytest.raises(MXGenError, match="stores optimizer states as a Python pickle"):
        ckpt.load_trainer(trainer, writer.final_dir, "trainer")


def test_another_optimizers_states_are_refused(tmp_path):
    _, trainer = _trained_trainer([mx.cpu()], None, steps=1)
    with ckpt.CheckpointWriter(str(tmp_path), 1) as writer:
        ckpt.save_trainer(trainer, writer, "trainer")
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize()
    sgd = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    with pytest.raises(MXGenError, match="holds adam optimizer states; this run uses sgd"):
        ckpt.load_trainer(sgd, writer.final_dir, "trainer")


def test_metrics_log_drops_records_after_the_resumed_step(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    log = MetricsLog(path)
    for step in (10, 20, 30, 40):
        log.write(kind="train", step=step)
    with open(path, "a") as f:
        f.write('{"kind": "train", "st')             # a line cut short by a kill
    resumed = MetricsLog(path, keep_until=20)
    resumed.write(kind="train", step=30)
    assert [r["step"] for r in resumed.read()] == [10, 20, 30]
    # opening a log never deletes one (a new run gets a new, empty folder)
    assert [r["step"] for r in MetricsLog(path).read()] == [10, 20, 30]


def test_the_shared_data_guard_catches_a_new_dependency(tmp_path):
    """The suite's guard (tests/conftest.py) fails tests that read the shared
    data folder without a quality fixture; check it on a stand-in folder."""
    from tests import conftest
    stand_in = tmp_path / "shared-data"
    stand_in.mkdir()
    (stand_in / "corpus.txt").write_text("text")
    saved = conftest._GUARD["roots"]
    conftest._GUARD["roots"] = [str(stand_in)]
    try:
        with pytest.raises(PermissionError, match="reads shared data"):
            open(stand_in / "corpus.txt")
        with pytest.raises(PermissionError):
            os.listdir(stand_in)
        assert open(tmp_path / "elsewhere.txt", "w")       # other paths are untouched
    finally:
        conftest._GUARD["roots"] = saved
        conftest._GUARD["violations"] = []
