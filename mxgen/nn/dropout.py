"""Dropout for training: MXNet's operator or mxgen's native one.

MXNet 1.9's CPU ``Dropout`` draws one mt19937 number per element, a
noticeable share of a small char-LSTM step (BENCHMARKS.md has the numbers).  mxgen's
``mxgen_dropout`` op (kernels/dropout.h) decides each element with a
counter-based Philox generator instead: same Bernoulli(1 - p) masks scaled by
1 / (1 - p), a different random stream; the backward pass recomputes the mask
from the key rather than storing it.

Custom operators are not told whether MXNet runs in training mode, so every
native dropout takes a *probe*: MXNet's own ``Dropout`` of 64 ones with
p = 0.5.  Outside training the probe is all ones and the native op is the
identity, exactly as MXNet's; in training its 64 random bits, drawn from
MXNet's seeded generator, key the Philox stream, so ``mx.random.seed`` fixes
the masks and a resumed run redraws them exactly.  ``salt`` tells apart
several dropouts that share one probe.
"""

from .. import _calibrate

__all__ = ["DROPOUT_IMPLS", "PROBE_SIZE", "resolve_dropout_impl", "explain_dropout_impl",
           "training_probe", "dropout"]

DROPOUT_IMPLS = ("auto", "mxnet", "native")
PROBE_SIZE = 64


def resolve_dropout_impl(impl, contexts=None, shape=None):
    """``'mxnet'`` or ``'native'``; see :func:`explain_dropout_impl`."""
    return explain_dropout_impl(impl, contexts, shape)[0]


def explain_dropout_impl(impl, contexts=None, shape=None, p=0.2):
    """The dropout kernel and a one-line reason, ``(impl, reason)``.

    ``'auto'`` is native only on CPU where the op is loaded and measures
    faster than MXNet's Dropout here, forward+backward on an activation of
    ``shape`` (``(T, N, H)``, needed where it has to measure); see
    :mod:`mxgen._calibrate`.
    """
    measure = None if shape is None else (
        "dropout", {"shape": list(shape), "p": p}, "mxgen._timing:dropout", "mxgen_dropout",
        "MXNet's Dropout")
    return _calibrate.explain_impl("dropout_impl", impl, DROPOUT_IMPLS, "mxnet", "mxgen_dropout",
                                   "the native dropout op runs", contexts, None, measure)


def training_probe(F):
    """MXNet's Dropout of ones: all ones outside training, 0 or 2 in training."""
    return F.Dropout(F.ones(shape=(PROBE_SIZE,)), p=0.5)


def dropout(F, x, p, probe=None, salt=0):
    """Dropout of ``x`` with rate ``p``: native when given a probe, else MXNet's."""
    if p <= 0:
        return x
    if probe is None:
        return F.Dropout(x, p=p)
    return F.mxgen_dropout(x, probe, p=p, salt=salt)
