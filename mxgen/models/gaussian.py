"""A toy class-conditional Gaussian model: heights of martians and humans.

Each class gets one normal distribution fitted by maximum likelihood:

    mean  = sum(x) / n
    sigma = sqrt(sum((x - mean)^2) / n)          (MLE, ddof = 0)

The unbiased estimate divides by ``n - 1`` instead; :meth:`stats` reports
both.  On the seed data (cm):

    martians: mean 274.0, sigma(MLE) 26.15, sigma(n-1) 27.57
    humans:   mean 174.5, sigma(MLE) 21.96, sigma(n-1) 23.15

(The original tutorial printed standard deviations that match neither.)
A height is classified by the larger likelihood times the class prior;
"interbred" individuals are drawn from the equal-weight mixture of the classes.
"""
import math
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ..errors import MXGenError

__all__ = ["MARTIANS", "HUMANS", "GaussianClassModel", "default_heights"]

MARTIANS = [250, 260, 270, 300, 220, 260, 280, 290, 300, 310]
HUMANS = [160, 170, 180, 190, 175, 140, 180, 210, 140, 200]


def default_heights():
    return {"martian": list(MARTIANS), "human": list(HUMANS)}


@dataclass
class _ClassFit:
    mean: float
    std: float        # MLE
    std_unbiased: float
    count: int


class GaussianClassModel:
    """One Gaussian per class, fitted with MXNet arrays."""

    def __init__(self, ctx=None):
        self.ctx = ctx or mx.cpu()
        self.classes = {}

    def fit(self, data):
        """``data``: ``{class_name: [values]}``; each class needs >= 2 values."""
        self.classes = {}
        for name, values in data.items():
            x = mx.nd.array(values, ctx=self.ctx, dtype="float64")
            n = x.size
            if n < 2:
                raise MXGenError("class %r needs at least 2 values to fit, got %d" % (name, n))
            mean = x.mean()
            sq = ((x - mean) ** 2).sum()
            self.classes[name] = _ClassFit(mean.asscalar().item(),
                                           math.sqrt(sq.asscalar() / n),
                                           math.sqrt(sq.asscalar() / (n - 1)), n)
            if self.classes[name].std == 0:
                raise MXGenError("class %r has zero variance" % name)
        return self

    def stats(self):
        return {k: vars(v) for k, v in self.classes.items()}

    def _require_fit(self):
        if not self.classes:
            raise MXGenError("the model is not fitted")

    def log_likelihood(self, values):
        """``{class: (n,) log-density}`` of each value under each class."""
        self._require_fit()
        x = mx.nd.array(np.atleast_1d(values), ctx=self.ctx, dtype="float64")
        out = {}
        for name, fit in self.classes.items():
            z = (x - fit.mean) / fit.std
            out[name] = (-0.5 * z ** 2 - math.log(fit.std * math.sqrt(2 * math.pi))).asnumpy()
        return out

    def classify(self, values):
        """The most likely class for each value (priors from class counts)."""
        ll = self.log_likelihood(values)
        names = list(ll)
        total = sum(f.count for f in self.classes.values())
        scores = np.stack([ll[n] + math.log(self.classes[n].count / total) for n in names])
        return [names[i] for i in scores.argmax(axis=0)]

    def sample(self, name, num, seed=None):
        self._require_fit()
        if name not in self.classes:
            raise MXGenError("unknown class %r; known: %s" % (name, ", ".join(self.classes)))
        if seed is not None:
            mx.random.seed(seed)
        fit = self.classes[name]
        return mx.nd.random.normal(fit.mean, fit.std, shape=(num,), ctx=self.ctx,
                                   dtype="float64").asnumpy()

    def sample_interbred(self, num, seed=None):
        """Draws from the equal-weight mixture of all classes."""
        self._require_fit()
        if seed is not None:
            mx.random.seed(seed)
        fits = list(self.classes.values())
        which = mx.nd.random.randint(0, len(fits), shape=(num,), ctx=self.ctx).asnumpy()
        means = mx.nd.array([fits[i].mean for i in which], ctx=self.ctx, dtype="float64")
        stds = mx.nd.array([fits[i].std for i in which], ctx=self.ctx, dtype="float64")
        return (means + stds * mx.nd.random.normal(shape=(num,), ctx=self.ctx,
                                                   dtype="float64")).asnumpy()
