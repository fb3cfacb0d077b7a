"""The optimizers mxgen's trainers use.

:class:`Adam` is ``mx.optimizer.Adam`` whose dense float32 updates on CPU
run mxgen's native ``mxgen_adam_update`` (kernels/optimizer.h): the same
arithmetic as MXNet's ``adam_update`` (to float rounding), the same states
and update counters, vectorised -- MXNet's kernel takes a square root and a
division one weight at a time.  Anything else (GPU arrays, float16, sparse
gradients, the native library missing or disabled) takes MXNet's own path.
Only the language-model loop uses it (``Cluster.trainer(native_update=True)``):
oneDNN reorders convolution weights into a layout of its own, in place,
when a network runs outside training, and a custom op cannot read an array
in that layout (MXNet: "We can't generate TBlob for MKLDNN data"), so the
convolutional networks keep MXNet's update.
The class keeps MXNet's name, which checkpoints record (see
:mod:`mxgen.utils.checkpoint`): a checkpoint written with either resumes
with the other.
"""
import math

import mxnet as mx
import numpy as np

from .. import _native

__all__ = ["Adam", "create"]


class Adam(mx.optimizer.Adam):
    """``mx.optimizer.Adam`` with the native update where it applies."""

    def _native_ok(self, weight, grad):
        return (weight.context.device_type == "cpu" and weight.dtype == np.float32
                and weight.stype == "default" and grad.stype == "default"
                and _native.available("mxgen_adam_update"))

    def update(self, index, weight, grad, state):
        if not self._native_ok(weight, grad):
            return super().update(index, weight, grad, state)
        # as mx.optimizer.Adam.update: the bias corrections folded into lr
        self._update_count(index)
        lr = self._get_lr(index)
        wd = self._get_wd(index)
        t = self._index_update_count[index]
        lr *= math.sqrt(1. - self.beta2 ** t) / (1. - self.beta1 ** t)
        kwargs = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon,
                  "rescale_grad": self.rescale_grad}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        mean, var = state
        mx.nd.mxgen_adam_update(weight, grad, mean, var, out=weight, lr=lr, wd=wd, **kwargs)


def create(name, options):
    """``(optimizer, options)`` for ``gluon.Trainer``: an :class:`Adam`
    instance (options given to it) for ``'adam'``, else the name and options
    unchanged (MXNet's registry)."""
    if isinstance(name, str) and name.lower() == "adam":
        return Adam(**options), None
    return name, options
