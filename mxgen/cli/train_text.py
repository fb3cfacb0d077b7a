"""Train a character-level language model (truncated BPTT).

The corpus is a file, a directory, a glob, or 'stdlib' (this Python's own
standard-library sources; no download).  The last --val-fraction of the text
is held out; validation bits per character are reported every epoch and the
best checkpoint is kept.  Ends by printing a sample from the best checkpoint.
"""
from .common import add_training_args


def get_parser(parser):
    parser.add_argument("--data", default=None,
                        help="corpus: file, directory, glob or 'stdlib' (default)")
    m = parser.add_argument_group("model")
    m.add_argument("--mode", choices=["rnn_relu", "rnn_tanh", "gru", "lstm"], default=None,
                   help="recurrent cell (default: lstm)")
    m.add_argument("--num-embed", type=int, default=None, help="embedding size (default: 64)")
    m.add_argument("--num-hidden", type=int, default=None, help="hidden units (default: 256)")
    m.add_argument("--num-layers", type=int, default=None, help="layers (default: 2)")
    m.add_argument("--dropout", type=float, default=None, help="dropout (default: 0.2)")
    m.add_argument("--tie-weights", action="store_true", default=None,
                   help="share embedding and decoder weights (needs num_embed == num_hidden)")
    t = parser.add_argument_group("training")
    t.add_argument("--seq-len", type=int, default=None, help="BPTT steps (default: 100)")
    t.add_argument("--optimizer", default=None, help="any MXNet optimizer (default: adam)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.002)")
    t.add_argument("--wd", type=float, default=None, help="weight decay (default: 0)")
    t.add_argument("--lr-schedule", choices=["constant", "cosine", "plateau"], default=None,
                   help="plateau halves the rate when validation stalls (default)")
    t.add_argument("--clip", type=float, default=None,
                   help="global gradient-norm clip (default: 5)")
    t.add_argument("--val-fraction", type=float, default=None,
                   help="held-out tail of the corpus (default: 0.1)")
    t.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    t.add_argument("--save-every", type=int, default=None,
                   help="also checkpoint every N steps (default: each epoch)")
    t.add_argument("--rnn-impl", choices=["auto", "fused", "native"], default=None,
                   help="recurrent kernel: MXNet's fused RNN op or mxgen's native LSTM/GRU op"
                        " (default: auto = native where it measures faster on this machine;"
                        " the log says which and why)")
    t.add_argument("--dropout-impl", choices=["auto", "mxnet", "native"], default=None,
                   help="dropout kernel: MXNet's Dropout or mxgen's native op (masks of the"
                        " same distribution; default: auto = native where it measures faster)")
    t.add_argument("--sample-length", type=int, default=300,
                   help="characters of the closing sample (default: %(default)s)")
    add_training_args(parser, "runs/text")
    return parser


_FIELDS = ["data", "mode", "num_embed", "num_hidden", "num_layers", "dropout", "tie_weights",
           "seq_len", "batch_size", "epochs", "optimizer", "lr", "wd", "lr_schedule", "clip",
           "val_fraction", "max_chars", "ctx", "seed", "save_every", "max_minutes", "max_steps",
           "dry_run", "resume", "out", "rnn_impl", "dropout_impl"]


def main(args):
    from ..generation import generate
    from ..train.text import TextTrainConfig, train_text

    given = {k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None}
    cfg = TextTrainConfig(**given)
    cfg.progress = not args.no_progress
    result = train_text(cfg, explicit=set(given))
    print("checkpoint: %s" % result["checkpoint"])
    if result["best_val_bpc"] is not None:
        print("best validation: %.4f bits per character" % result["best_val_bpc"])
    from ..train.text import load_char_rnn
    model, vocab, _, _ = load_char_rnn(result["run_dir"], prefer="best")
    model.hybridize(static_alloc=True)
    prompt = "\n" if "\n" in vocab.index else vocab.chars[0]
    text = generate(model, vocab, prompt, args.sample_length if not cfg.dry_run else 40,
                    temperature=0.8, seed=result["config"].seed)[0]
    print("--- sample (temperature 0.8) ---")
    print(text.strip("\n"))
    return 0
