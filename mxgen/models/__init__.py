"""Model zoo.

``get_model(name, **config)`` builds a network by name (``char_rnn``,
``unrolled_rnn``, ``dcgan_generator``, ``dcgan_discriminator``,
``style_net``) or a preset: a named hyper-parameter dict (:data:`PRESETS`,
derived from the config dataclasses' own defaults) that keyword arguments
extend or override, e.g. ``get_model("char_lstm_2x256", vocab_size=85)``.
A wrong name lists the valid ones.  ``load(path)`` opens any mxgen
checkpoint by the family recorded in it (:mod:`mxgen.models.registry`).
"""
import dataclasses
from typing import Any, List

import mxnet as mx

from ..errors import MXGenError
from . import style  # noqa: F401  (registers the style_net family)
from .char_rnn import CharRNN, CharRNNConfig, char_rnn
from .dcgan import (DCGANConfig, Discriminator, Generator, dcgan_discriminator,
                    dcgan_generator)
from .gaussian import GaussianClassModel
from .registry import Family, Loaded, families, family, load, register
from .style import StyleNetConfig, TransformerNet
from .unrolled import UnrolledRNN, UnrolledRNNConfig, unrolled_rnn

__all__ = ["get_model", "list_models", "load", "PRESETS", "CharRNN", "CharRNNConfig",
           "UnrolledRNN", "UnrolledRNNConfig", "GaussianClassModel", "DCGANConfig", "Generator",
           "Discriminator", "StyleNetConfig", "TransformerNet", "Family", "Loaded", "register",
           "family", "families"]

_BUILDERS = {
    "char_rnn": char_rnn,
    "unrolled_rnn": unrolled_rnn,
    "dcgan_generator": dcgan_generator,
    "dcgan_discriminator": dcgan_discriminator,
    "style_net": lambda **config: TransformerNet(**config),
}


def _defaults(config_cls, *skip, **changes):
    """A config dataclass's defaults (less ``skip``), with ``changes``."""
    values = {f.name: f.default for f in dataclasses.fields(config_cls)
              if f.default is not dataclasses.MISSING and f.name not in skip}
    return dict(values, **changes)


# name -> (builder, hyper-parameters)
PRESETS = {
    # mxgen train-text's defaults
    "char_lstm_2x256": ("char_rnn", _defaults(CharRNNConfig, "tie_weights", mode="lstm")),
    "char_gru_2x256": ("char_rnn", _defaults(CharRNNConfig, "tie_weights", mode="gru")),
    # a larger model for corpora of tens of megabytes
    "char_lstm_3x512": ("char_rnn", _defaults(CharRNNConfig, "tie_weights", mode="lstm",
                                              num_embed=128, num_hidden=512, num_layers=3,
                                              dropout=0.3)),
    # the tutorial's unrolled many-to-one network
    "unrolled_rnn_3char": ("unrolled_rnn", _defaults(UnrolledRNNConfig)),
    "dcgan_64_generator": ("dcgan_generator", _defaults(DCGANConfig, "ndf", "nc", image_size=64)),
    "dcgan_64_discriminator": ("dcgan_discriminator",
                               _defaults(DCGANConfig, "latent_size", "ngf", "nc", image_size=64)),
    "dcgan_32_generator": ("dcgan_generator", _defaults(DCGANConfig, "ndf", "nc", image_size=32)),
    "dcgan_32_discriminator": ("dcgan_discriminator",
                               _defaults(DCGANConfig, "latent_size", "ngf", "nc", image_size=32)),
    "style_net_32": ("style_net", _defaults(StyleNetConfig)),
}


def list_models() -> List[str]:
    """Every builder and preset name."""
    return sorted(_BUILDERS) + sorted(PRESETS)


def get_model(name: str, **config: Any) -> mx.gluon.HybridBlock:
    """Build a model by builder or preset name; ``config`` extends/overrides
    a preset's hyper-parameters.  A wrong name lists the valid ones."""
    if name in PRESETS:
        family_name, params = PRESETS[name]
        return _BUILDERS[family_name](**dict(params, **config))
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise MXGenError("unknown model %r; valid names: %s" % (name, ", ".join(list_models()))) \
            from None
    return builder(**config)
