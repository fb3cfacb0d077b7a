"""Train a DCGAN on a folder of images (or the embedded 'shapes' set).

Images are converted to --channels, resized and centre-cropped to
--image-size (smaller images are upscaled with a warning).  After every epoch:
a sample grid from a fixed noise vector, the Frechet distance between real and
generated images (feature network named in the log), and a checkpoint.
"""
import logging

from ..train.gan import GANTrainConfig
from .common import add_config_args, config_from_args

CONFIG = GANTrainConfig


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def main(args):
    log = logging.getLogger("mxgen").info
    from ..train.gan import GANTrainConfig, train_gan

    cfg, explicit = config_from_args(GANTrainConfig, args)
    result = train_gan(cfg, explicit=explicit)
    if not result["writer"]:          # another rank of a distributed run reports
        return 0
    log("checkpoint: %s" % result["checkpoint"])
    log("Frechet distance: %.3f (%s features); best %.3f"
          % (result["frechet_distance"], result["feature_net"], result["best_fd"]))
    log("sample grid: %s" % result["grid"])
    return 0
