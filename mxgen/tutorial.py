"""The Gluon tutorial's calling conventions on mxgen's model.

Readers of "Generative Models using Apache MXNet" have code written against
its ``GluonRNNModel``::

    model = GluonRNNModel(mode, vocab_size, num_embed, num_hidden, num_layers, dropout)
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=batch_size, ctx=ctx)
    output, hidden = model(data, hidden)             # hidden: a list of states
    loss = loss_fn(output.reshape((-1, vocab_size)), target.reshape((-1,)))

:class:`GluonRNNModel` is :class:`~mxgen.models.CharRNN` with the tutorial's
positional order (``mode`` first); ``CharRNN`` itself accepts
``begin_state(func=..., batch_size=..., ctx=...)`` and a list of states.
The network is mxgen's: one fused layer per RNN layer with real dropout
between them, hybridizable, with the native kernels where they are faster.
"""
from .models.char_rnn import CharRNN

__all__ = ["GluonRNNModel"]


class GluonRNNModel(CharRNN):
    """``GluonRNNModel(mode, vocab_size, num_embed, num_hidden, num_layers,
    dropout=0.5, tie_weights=False)``, the tutorial's signature."""

    def __init__(self, mode, vocab_size, num_embed, num_hidden, num_layers, dropout=0.5,
                 tie_weights=False, **kwargs):
        super().__init__(vocab_size, num_embed, num_hidden, num_layers, dropout=dropout,
                         mode=mode, tie_weights=tie_weights, **kwargs)
