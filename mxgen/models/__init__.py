"""Model zoo: ``get_model(name, **config)``."""
from ..errors import MXGenError
from .char_rnn import CharRNN, CharRNNConfig, char_rnn
from .dcgan import DCGANConfig, Discriminator, Generator, dcgan_discriminator, dcgan_generator
from .gaussian import GaussianClassModel
from .unrolled import UnrolledRNN, UnrolledRNNConfig, unrolled_rnn

__all__ = ["get_model", "list_models", "CharRNN", "CharRNNConfig", "UnrolledRNN",
           "UnrolledRNNConfig", "GaussianClassModel", "DCGANConfig", "Generator",
           "Discriminator"]

_MODELS = {
    "char_rnn": char_rnn,
    "unrolled_rnn": unrolled_rnn,
    "dcgan_generator": dcgan_generator,
    "dcgan_discriminator": dcgan_discriminator,
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
