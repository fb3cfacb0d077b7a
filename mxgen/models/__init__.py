"""Model zoo.

``get_model(name, **config)`` builds a model family by name (``char_rnn``,
``unrolled_rnn``, ``dcgan_generator``, ``dcgan_discriminator``) or a preset:
a named hyper-parameter dict (:data:`PRESETS`) that keyword arguments extend
or override, e.g. ``get_model("char_lstm_2x256", vocab_size=85)``.  A wrong
name lists the valid ones.  ``load(path)`` opens any mxgen checkpoint by the
family recorded in it.
"""
from ..errors import MXGenError
from .char_rnn import CharRNN, CharRNNConfig, CharRNNStepper, char_rnn, load_char_rnn
from .dcgan import (DCGANConfig, Discriminator, Generator, dcgan_discriminator,
                    dcgan_generator, load_generator)
from .gaussian import GaussianClassModel
from .unrolled import UnrolledRNN, UnrolledRNNConfig, unrolled_rnn

__all__ = ["get_model", "list_models", "load", "PRESETS", "CharRNN", "CharRNNConfig",
           "CharRNNStepper", "UnrolledRNN", "UnrolledRNNConfig", "GaussianClassModel",
           "DCGANConfig", "Generator", "Discriminator"]

_FAMILIES = {
    "char_rnn": char_rnn,
    "unrolled_rnn": unrolled_rnn,
    "dcgan_generator": dcgan_generator,
    "dcgan_discriminator": dcgan_discriminator,
}

# name -> (family, hyper-parameters)
PRESETS = {
    # mxgen train-text's defaults
    "char_lstm_2x256": ("char_rnn", dict(mode="lstm", num_embed=64, num_hidden=256,
                                         num_layers=2, dropout=0.2)),
    "char_gru_2x256": ("char_rnn", dict(mode="gru", num_embed=64, num_hidden=256,
                                        num_layers=2, dropout=0.2)),
    # a larger model for corpora of tens of megabytes
    "char_lstm_3x512": ("char_rnn", dict(mode="lstm", num_embed=128, num_hidden=512,
                                         num_layers=3, dropout=0.3)),
    # the tutorial's unrolled many-to-one network
    "unrolled_rnn_3char": ("unrolled_rnn", dict(num_inputs=3, num_embed=42, num_hidden=256)),
    "dcgan_64_generator": ("dcgan_generator", dict(image_size=64, latent_size=100, ngf=64)),
    "dcgan_64_discriminator": ("dcgan_discriminator", dict(image_size=64, ndf=64)),
    "dcgan_32_generator": ("dcgan_generator", dict(image_size=32, latent_size=100, ngf=64)),
    "dcgan_32_discriminator": ("dcgan_discriminator", dict(image_size=32, ndf=64)),
}


def list_models():
    """Every family and preset name."""
    return sorted(_FAMILIES) + sorted(PRESETS)


def get_model(name, **config):
    """Build a model by family or preset name; ``config`` extends/overrides a
    preset's hyper-parameters.  A wrong name lists the valid ones."""
    if name in PRESETS:
        family, params = PRESETS[name]
        return _FAMILIES[family](**dict(params, **config))
    try:
        factory = _FAMILIES[name]
    except KeyError:
        raise MXGenError("unknown model %r; valid names: %s" % (name, ", ".join(list_models()))) \
            from None
    return factory(**config)


def load(path, ctx=None, prefer="best"):
    """Open an mxgen checkpoint (run directory or checkpoint directory) by its family.

    Returns ``(model, vocab)`` for a character model, ``(generator,
    config)`` for a DCGAN and ``(transformer, meta)`` for a style network.  ``prefer``: which pointer of a run directory
    (``best`` or ``latest``) to follow first.
    """
    from ..utils import checkpoint as ckpt
    ckpt_dir = ckpt.resolve(path, prefer=prefer)
    ckpt.read_manifest(ckpt_dir, required=("config.json",))
    family = ckpt.read_json(ckpt_dir, "config.json").get("family")
    if family == "char_rnn":
        model, vocab, _, _ = load_char_rnn(ckpt_dir, ctx=ctx)
        return model, vocab
    if family == "dcgan":
        gen, config, _ = load_generator(ckpt_dir, ctx=ctx)
        return gen, config
    if family == "style_net":
        from .style import load_style_net
        net, meta, _ = load_style_net(ckpt_dir, ctx=ctx)
        return net, meta
    raise MXGenError("checkpoint %s holds a %r model; mxgen loads char_rnn, dcgan and"
                     " style_net" % (ckpt_dir, family))
