"""mxgen_adam_update and mxgen.train.optim.Adam: MXNet's Adam, to float
rounding, on every kernel path; the trainer's native path really runs."""
import mxnet as mx
import numpy as np
import pytest

from mxgen.train import optim


def _arrays(shape, seed):
    rng = np.random.RandomState(seed)
    return [mx.nd.array(a) for a in (rng.normal(size=shape), rng.normal(size=shape) * 3,
                                     rng.normal(size=shape) * 0.1,
                                     rng.uniform(0, 0.1, size=shape))]


@pytest.mark.parametrize("shape,attrs", [
    ((1000,), {}),
    ((300, 77), dict(wd=0.01, clip_gradient=0.5, rescale_grad=0.25)),
    ((70001,), dict(wd=1e-3, beta1=0.5, epsilon=1e-6)),      # threads split, a ragged end
])
def test_native_update_is_mxnets(isa, shape, attrs):
    ref = _arrays(shape, 1)
    got = [a.copy() for a in ref]
    for step in range(4):
        kw = dict(lr=0.01 / (step + 1), **attrs)
        mx.nd.adam_update(*ref, out=ref[0], **kw)
        mx.nd.mxgen_adam_update(*got, out=got[0], **kw)
    for name, r, g in zip(("weight", "grad", "mean", "var"), ref, got):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=2e-6, atol=1e-7, err_msg=name)


def test_native_update_treats_nan_and_infinity_as_mxnet_does(isa):
    ref = _arrays((40,), 5)
    g = ref[1].asnumpy()
    g[[1, 2, 3]] = [np.nan, np.inf, -3e38]
    ref[1] = mx.nd.array(g)
    got = [a.copy() for a in ref]
    kw = dict(lr=0.01, clip_gradient=1.0, wd=1e-3)
    mx.nd.adam_update(*ref, out=ref[0], **kw)
    mx.nd.mxgen_adam_update(*got, out=got[0], **kw)
    assert np.isnan(got[0].asnumpy()[1])            # NaN passes the clip, as in MXNet
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=2e-6, atol=1e-7)


def test_native_update_checks_shapes():
    w, g, m, v = _arrays((10,), 2)
    with pytest.raises(mx.base.MXNetError, match="mean must have the weight's shape"):
        mx.nd.mxgen_adam_update(w, g, mx.nd.zeros((11,)), v, out=w, lr=0.1)


def _train(optimizer, options, counter=None):
    mx.random.seed(3)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(16, activation="tanh"), mx.gluon.nn.Dense(4))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), optimizer, options)
    rng = np.random.RandomState(0)
    x, y = mx.nd.array(rng.normal(size=(32, 8))), mx.nd.array(rng.normal(size=(32, 4)))
    for _ in range(6):
        with mx.autograd.record():
            loss = ((net(x) - y) ** 2).sum()
        loss.backward()
        trainer.step(32)
    return [v.data().asnumpy() for v in net.collect_params().values()]   # in creation order


def test_trainer_with_mxgen_adam_follows_mxnets(monkeypatch):
    calls = []
    native = mx.nd.mxgen_adam_update

    def counted(*args, **kwargs):
        calls.append(1)
        return native(*args, **kwargs)
    monkeypatch.setattr(mx.nd, "mxgen_adam_update", counted)
    options = dict(learning_rate=0.05, wd=1e-3, clip_gradient=2.0)
    ours = _train(*optim.create("adam", options))
    theirs = _train("adam", options)
    assert len(calls) == 6 * 4                    # every update of every parameter
    for k, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg="parameter %d" % k)
    # the same name, which checkpoints record: states written by one load into the other
    assert type(optim.Adam()).__name__.lower() == "adam"
    assert optim.create("sgd", {"learning_rate": 0.1}) == ("sgd", {"learning_rate": 0.1})
