"""The tutorial's "unrolled" many-to-one RNN built from shared Dense layers.

For inputs ``c_1 .. c_N`` (one window of characters)::

    h_0 = 0
    h_t = tanh(W_hidden (h_{t-1} + relu(W_in embed(c_t))))
    logits = W_out h_N

``W_in`` and ``W_hidden`` are the same two Dense layers at every position: an
RNN written out by hand, which is what makes it a good first model to read.
"""
from dataclasses import asdict, dataclass

from mxnet.gluon import HybridBlock, nn

from ..errors import MXGenError

__all__ = ["UnrolledRNNConfig", "UnrolledRNN", "unrolled_rnn"]


@dataclass
class UnrolledRNNConfig:
    vocab_size: int
    num_inputs: int = 3
    num_embed: int = 42
    num_hidden: int = 256

    def validate(self):
        for name, value in asdict(self).items():
            if value < 1:
                raise MXGenError("%s must be >= 1, got %r" % (name, value))
        return self


class UnrolledRNN(HybridBlock):
    """Many-to-one character model: ``(N, num_inputs)`` ids -> ``(N, vocab)`` logits."""

    def __init__(self, vocab_size, num_inputs=3, num_embed=42, num_hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.config = UnrolledRNNConfig(vocab_size, num_inputs, num_embed, num_hidden).validate()
        self.num_inputs, self.num_hidden = num_inputs, num_hidden
        with self.name_scope():
            self.embedding = nn.Embedding(vocab_size, num_embed)
            self.input_dense = nn.Dense(num_hidden, activation="relu", in_units=num_embed)
            self.hidden_dense = nn.Dense(num_hidden, activation="tanh", in_units=num_hidden)
            self.output_dense = nn.Dense(vocab_size, in_units=num_hidden)

    def hybrid_forward(self, F, inputs):
        embedded = self.embedding(inputs)                          # (N, num_inputs, E)
        steps = F.split(embedded, num_outputs=self.num_inputs, axis=1, squeeze_axis=True)
        if self.num_inputs == 1:
            steps = [steps]
        h = F.zeros_like(self.input_dense(steps[0]))               # (N, H)
        for x in steps:
            h = self.hidden_dense(h + self.input_dense(x))         # shared weights
        return self.output_dense(h)                                # (N, V)


def unrolled_rnn(**config):
    return UnrolledRNN(**config)
