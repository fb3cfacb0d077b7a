"""Train a feed-forward style network on a folder of content images.

The network (Johnson et al.: reflection padding, instance normalisation,
residual blocks, upsample + convolution) learns to restyle any content image
like --style, by the losses of `mxgen stylize --method optim` through the
feature network named in the log.  After every epoch: a side-by-side sample
(content | style | result) and a checkpoint; `mxgen stylize --method net
--model RUN_DIR` then stylises in one pass.
"""
import logging

from ..train.style import StyleTrainConfig
from .common import add_config_args, config_from_args

CONFIG = StyleTrainConfig


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def main(args):
    log = logging.getLogger("mxgen").info
    from ..train.style import StyleTrainConfig, train_style

    cfg, explicit = config_from_args(StyleTrainConfig, args)
    result = train_style(cfg, explicit=explicit)
    if not result["writer"]:          # another rank of a distributed run reports
        return 0
    log("checkpoint: %s" % result["checkpoint"])
    log("feature network: %s" % result["feature_net"])
    log("sample: %s" % result["sample"])
    return 0
