"""The adversarial losses of ``mxgen train-gan --loss``, on D's logits.

Each returns one loss per sample (shape ``(N,)``); the trainer divides the
summed gradient by the batch size, so the objective is the batch mean.

* ``bce``: the DCGAN tutorial's -- sigmoid binary cross-entropy, real
  labelled 1 and generated 0 for D, generated labelled 1 for G (Gluon's
  ``SigmoidBinaryCrossEntropyLoss``, as the seed trained);
* ``nonsat``: the same non-saturating logistic game written on the logits,
  ``D: softplus(-D(x)) + softplus(D(G(z)))``, ``G: softplus(-D(G(z)))``
  (the form R1 is defined for; equal to ``bce`` up to rounding);
* ``hinge``: ``D: relu(1 - D(x)) + relu(1 + D(G(z)))``, ``G: -D(G(z))``
  (SNGAN / SAGAN).
"""
from mxnet import gluon

__all__ = ["LOSSES", "d_loss", "g_loss"]

LOSSES = ("bce", "nonsat", "hinge")
_BCE = gluon.loss.SigmoidBinaryCrossEntropyLoss()


def _softplus(F, x):
    return F.Activation(x, act_type="softrelu")


def d_loss(F, kind, real, fake):
    """D's loss per sample from its logits on real and generated images."""
    if kind == "bce":
        return _BCE(real, F.ones_like(real)) + _BCE(fake, F.zeros_like(fake))
    if kind == "nonsat":
        return _softplus(F, -real) + _softplus(F, fake)
    if kind == "hinge":
        return F.relu(1 - real) + F.relu(1 + fake)
    raise ValueError("unknown GAN loss %r (one of %s)" % (kind, ", ".join(LOSSES)))


def g_loss(F, kind, fake):
    """G's loss per sample from D's logits on its images."""
    if kind == "bce":
        return _BCE(fake, F.ones_like(fake))
    if kind == "nonsat":
        return _softplus(F, -fake)
    if kind == "hinge":
        return -fake
    raise ValueError("unknown GAN loss %r (one of %s)" % (kind, ", ".join(LOSSES)))
