"""Layers that model families are built from.

``rnn``: fused recurrent layers with one flat weight vector, the per-step
``cell_step`` arithmetic, and the choice between MXNet's fused op and mxgen's
native kernels.  ``dropout``: dropout through MXNet's op or mxgen's native op.
``precision``: layers that compute in bfloat16/float16.  The GAN stabilisers:
``spectral`` (spectral normalisation), ``ema`` (a moving average of weights),
``gan_loss`` (bce, nonsat and hinge losses).
"""
from .dropout import dropout, training_probe
from .rnn import MODES, FusedRNN, cell_step, make_rnn, num_gates, num_states

__all__ = ["MODES", "FusedRNN", "make_rnn", "cell_step", "num_gates", "num_states",
           "dropout", "training_probe"]
