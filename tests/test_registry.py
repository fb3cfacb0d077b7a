"""A new model family is one registration: a toy family, defined in this
file alone, gets checkpoints, loading, export and exact resume from the
registry and the shared training loop, with no other file changed."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxgen.errors import MXGenError
from mxgen.export import export
from mxgen.fields import field
from mxgen.models import Family, families, load, register
from mxgen.train.common import Run, RunConfig, Task
from tests.conftest import REPO


# ---- the toy family: a config, a network, a registration ----------------------------
@dataclass
class ToyConfig:
    width: int = 8

    def validate(self):
        return self


class Toy(gluon.HybridBlock):
    """(N, 4) -> (N, 1) through one hidden layer."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = gluon.nn.Dense(width, in_units=4, activation="tanh")
            self.out = gluon.nn.Dense(1, in_units=width)

    def hybrid_forward(self, F, x):
        return self.out(self.hidden(x))


TOY = register(Family(name="toy", title="toy model", config=ToyConfig,
                      build=lambda c: Toy(c.width, prefix="toy_"), params="toy.params",
                      example=lambda c: (mx.nd.zeros((1, 4)),),
                      describes="x (N, 4) -> y (N, 1)"))


# ---- and its training: a config and a task on the shared loop ------------------------
@dataclass
class ToyTrainConfig(RunConfig):
    width: int = field(8, "hidden units", group="model")
    batch_size: int = field(8, "batch", group="run")
    epochs: int = field(3, "epochs", group="run")


class ToyTask(Task):
    def __init__(self, run):
        super().__init__(run)
        mx.random.seed(run.cfg.seed)
        self.net = TOY.build(ToyConfig(run.cfg.width))
        self.net.initialize(mx.init.Xavier(), ctx=run.ctxs)
        self.net.hybridize()
        self.trainer = gluon.Trainer(self.net.collect_params(), "adam",
                                     {"learning_rate": 0.01})
        rng = np.random.RandomState(0)
        self.x = rng.normal(size=(64, 4)).astype(np.float32)
        self.y = self.x.sum(axis=1, keepdims=True)
        self.num_batches = len(self.x) // run.cfg.batch_size
        run.track(nets={"toy": self.net}, trainers={"trainer": self.trainer},
                  meta=lambda: {"model": {"width": run.cfg.width}})
        run.restore()

    def begin_epoch(self, epoch):
        self.position = self.run.progress["batch"]

    def step(self):
        n = self.run.cfg.batch_size
        x = mx.nd.array(self.x[self.position * n:(self.position + 1) * n])
        y = mx.nd.array(self.y[self.position * n:(self.position + 1) * n])
        self.position += 1
        with autograd.record():
            loss = ((self.net(x) - y) ** 2).sum()
        loss.backward()
        self.trainer.step(n)
        return loss.reshape((1,)), n, None


def _train(out, **kw):
    cfg = ToyTrainConfig(out=str(out), progress=False, **kw)
    with Run(cfg, TOY, explicit=set(kw), log=lambda *_: None) as run:
        return run.train(ToyTask(run))


def test_the_toy_family_is_registered():
    assert families()["toy"] is TOY
    with pytest.raises(ValueError, match="registered twice"):
        register(Family(name="toy", title="another", config=ToyConfig, build=Toy))


def test_a_registered_family_gets_checkpoints_load_export_and_exact_resume(tmp_path):
    straight = _train(tmp_path / "a")
    assert straight["step"] == 24
    metrics = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
    assert [r["step"] for r in metrics if r["kind"] == "train"][-1] == 24
    # resume: stop after 10 steps, then continue: the same weights, bit for bit
    first = _train(tmp_path / "b", max_steps=10)
    assert first["stopped"] == "max_steps"
    _train(tmp_path / "b", resume=True)
    a = load(str(tmp_path / "a"), prefer="latest")
    b = load(str(tmp_path / "b"), prefer="latest")
    assert isinstance(a.model, Toy) and a.config == ToyConfig(8) and a.vocab is None
    for key, value in a.model._collect_params_with_prefix().items():
        np.testing.assert_array_equal(value.data().asnumpy(),
                                      b.model._collect_params_with_prefix()[key].data().asnumpy())
    # export: a graph that any MXNet program reloads, giving the same outputs
    meta = export(str(tmp_path / "a"), str(tmp_path / "exp"))
    assert meta["family"] == "toy" and meta["model"] == {"width": 8} and "toy" in meta["graphs"]
    x = np.random.RandomState(1).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = ("import mxnet as mx, numpy as np, json, sys\n"
              "d = sys.argv[1]\n"
              "g = json.load(open(d + '/exp/export.json'))['graphs']['toy']\n"
              "net = mx.gluon.SymbolBlock.imports(d + '/exp/' + g['symbol'], g['inputs'],"
              " d + '/exp/' + g['params'])\n"
              "np.save(d + '/y.npy', net(mx.nd.array(np.load(d + '/x.npy'))).asnumpy())\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path),
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    with mx.autograd.predict_mode():
        expected = a.model(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-6)
    # and the family is named in errors
    with pytest.raises(MXGenError, match="holds a 'toy' model, not a DCGAN"):
        load(str(tmp_path / "a"), family="dcgan")


def test_the_registry_is_the_only_list_of_families():
    """No module but the registry and the families' own names them all."""
    import mxgen
    package = os.path.dirname(mxgen.__file__)
    listing = []
    for dirpath, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                if all(f in text for f in ('"char_rnn"', '"dcgan"', '"style_net"')):
                    listing.append(os.path.relpath(os.path.join(dirpath, name), REPO))
    assert listing == [], listing
