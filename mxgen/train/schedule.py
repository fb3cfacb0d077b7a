"""The cosine learning-rate curve, and its form for the parameter servers.

Under ``dist_async`` the optimizer runs on the servers, which call an MXNet
``lr_scheduler`` with their own update count.  The servers unpickle that
scheduler while ``mxnet`` itself is still being imported (the server loop
starts inside ``import mxnet``), so this module needs nothing but
``mxnet.lr_scheduler``, which is loaded by then.
"""
import math

from mxnet import lr_scheduler

__all__ = ["cosine_lr", "ServerCosine"]


def cosine_lr(step, base_lr, min_lr, total_steps):
    """The rate of step ``step`` (from 0) of a half cosine from ``base_lr``
    to ``min_lr`` over ``total_steps``."""
    frac = min(step / total_steps, 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * frac))


class ServerCosine(lr_scheduler.LRScheduler):
    """:func:`cosine_lr` counted in server updates: each of ``workers``
    pushes one update per step, so server update ``c`` (from 1) belongs to
    step ``first_step + (c - 1) // workers``; a resumed run passes its step
    as ``first_step`` while the optimizer's own count (Adam's bias
    correction) restarts with its state."""

    def __init__(self, base_lr, min_lr, total_steps, workers, first_step=0):
        super().__init__(base_lr=base_lr)
        self.min_lr, self.total_steps = min_lr, total_steps
        self.workers, self.first_step = workers, first_step

    def __call__(self, num_update):
        step = self.first_step + max(num_update - 1, 0) // self.workers
        return cosine_lr(step, self.base_lr, self.min_lr, self.total_steps)
