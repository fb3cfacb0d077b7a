"""Train a character-level language model (truncated BPTT).

The corpus is a file, a directory, a glob, or 'stdlib' (this Python's own
standard-library sources; no download).  The last --val-fraction of the text
is held out; validation bits per character are reported every epoch and the
best checkpoint is kept.  Ends by printing a sample from the best checkpoint.
"""
import logging
from dataclasses import dataclass

from ..fields import field
from ..train.text import TextTrainConfig
from .common import add_config_args, config_from_args


@dataclass
class ClosingSample:
    """What ``mxgen train-text`` prints when training ends."""
    sample_length: int = field(300, "characters of the closing sample", group="output")


CONFIG = (TextTrainConfig, ClosingSample)


def get_parser(parser):
    add_config_args(parser, TextTrainConfig)
    return add_config_args(parser, ClosingSample)


def main(args):
    log = logging.getLogger("mxgen").info
    from ..generation import default_prompt, generate
    from ..models import load
    from ..train.text import train_text

    cfg, explicit = config_from_args(TextTrainConfig, args)
    length = config_from_args(ClosingSample, args)[0].sample_length
    result = train_text(cfg, explicit=explicit)
    if not result["writer"]:          # another rank of a distributed run reports
        return 0
    log("checkpoint: %s" % result["checkpoint"])
    if result["best_val_bpc"] is not None:
        log("best validation: %.4f bits per character" % result["best_val_bpc"])
    if cfg.kvstore == "horovod":
        # generating inside a Horovod process crashes (segfault, not yet traced);
        # generation is its own command
        log("sample: mxgen generate --checkpoint %s" % result["run_dir"])
        return 0
    loaded = load(result["run_dir"], prefer="best")
    model, vocab = loaded.model, loaded.vocab
    model.hybridize(static_alloc=True)
    seed = result["config"].seed
    if result["config"].samples:
        texts = generate(model, vocab, "", length, temperature=0.8, num_samples=10, seed=seed,
                         stop_at_eos=True)
        log("--- ten samples (temperature 0.8; each ends at its end mark, cap %d) ---"
              % length)
        log("\n".join(t.replace("\n", "\n  ") for t in texts))
        return 0
    text = generate(model, vocab, default_prompt(vocab), length if not cfg.dry_run else 40,
                    temperature=0.8, seed=seed)[0]
    log("--- sample (temperature 0.8) ---")
    log(text.strip("\n"))
    return 0
