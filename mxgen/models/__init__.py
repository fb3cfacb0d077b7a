"""Model zoo: ``get_model(name, **config)``."""
from ..errors import MXGenError
from .char_rnn import CharRNN, CharRNNConfig, char_rnn
from .gaussian import GaussianClassModel
from .unrolled import UnrolledRNN, UnrolledRNNConfig, unrolled_rnn

__all__ = ["get_model", "list_models", "CharRNN", "CharRNNConfig", "UnrolledRNN",
           "UnrolledRNNConfig", "GaussianClassModel"]

_MODELS = {
    "char_rnn": char_rnn,
    "unrolled_rnn": unrolled_rnn,
}


def list_models():
    return sorted(_MODELS)


def get_model(name, **config):
    """Build a model by name; a wrong name lists the valid ones."""
    try:
        factory = _MODELS[name]
    except KeyError:
        raise MXGenError("unknown model %r; valid names: %s" % (name, ", ".join(list_models()))) \
            from None
    return factory(**config)
