"""Train a character-level language model (truncated BPTT).

The corpus is a file, a directory, a glob, or 'stdlib' (this Python's own
standard-library sources; no download).  The last --val-fraction of the text
is held out; validation bits per character are reported every epoch and the
best checkpoint is kept.  Ends by printing a sample from the best checkpoint.
"""
from .common import add_config_args, config_from_args


def get_parser(parser):
    from ..train.text import TextTrainConfig
    add_config_args(parser, TextTrainConfig)
    parser.add_argument("--sample-length", type=int, default=300,
                        help="characters of the closing sample (default: %(default)s)")
    return parser


def main(args):
    from ..generation import generate
    from ..models import load
    from ..train.text import TextTrainConfig, train_text

    cfg, explicit = config_from_args(TextTrainConfig, args)
    result = train_text(cfg, explicit=explicit)
    if not result["writer"]:          # another rank of a distributed run reports
        return 0
    print("checkpoint: %s" % result["checkpoint"])
    if result["best_val_bpc"] is not None:
        print("best validation: %.4f bits per character" % result["best_val_bpc"])
    if cfg.kvstore == "horovod":
        # generating inside a Horovod process crashes (segfault, not yet traced);
        # generation is its own command
        print("sample: mxgen generate --checkpoint %s" % result["run_dir"])
        return 0
    model, vocab = load(result["run_dir"], prefer="best")
    model.hybridize(static_alloc=True)
    if cfg.samples or result["config"].samples:
        texts = generate(model, vocab, "", args.sample_length, temperature=0.8, num_samples=10,
                         seed=result["config"].seed, stop_at_eos=True)
        print("--- ten samples (temperature 0.8; each ends at its end mark, cap %d) ---"
              % args.sample_length)
        print("\n".join(t.replace("\n", "\n  ") for t in texts))
        return 0
    prompt = "\n" if "\n" in vocab.index else vocab.chars[0]
    text = generate(model, vocab, prompt, args.sample_length if not cfg.dry_run else 40,
                    temperature=0.8, seed=result["config"].seed)[0]
    print("--- sample (temperature 0.8) ---")
    print(text.strip("\n"))
    return 0
