"""Train a feed-forward style network on a folder of content images.

The network (Johnson et al.: reflection padding, instance normalisation,
residual blocks, upsample + convolution) learns to restyle any content image
like --style, by the losses of `mxgen stylize --method optim` through the
feature network named in the log.  After every epoch: a side-by-side sample
(content | style | result) and a checkpoint; `mxgen stylize --method net
--model RUN_DIR` then stylises in one pass.
"""
from .common import add_config_args, config_from_args


def get_parser(parser):
    from ..train.style import StyleTrainConfig
    return add_config_args(parser, StyleTrainConfig)


def main(args):
    from ..train.style import StyleTrainConfig, train_style

    cfg, explicit = config_from_args(StyleTrainConfig, args)
    result = train_style(cfg, explicit=explicit)
    if not result["writer"]:          # another rank of a distributed run reports
        return 0
    print("checkpoint: %s" % result["checkpoint"])
    print("feature network: %s" % result["feature_net"])
    print("sample: %s" % result["sample"])
    return 0
