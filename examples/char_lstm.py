"""The tutorial's char-LSTM: truncated BPTT on a corpus, then generation.

Uses mxgen's training loop (hybridized fused LSTM, global-norm clipping,
checkpoints) and its generator (temperature, top-k, beam search).

python examples/char_lstm.py [--data FILE] [--epochs N] [--dry-run]
"""
import argparse
import logging

import mxgen  # noqa: F401  (threads before mxnet)
from mxgen.generation import generate
from mxgen.models import load
from mxgen.train.text import TextTrainConfig, train_text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="stdlib", help="corpus (default: stdlib)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--out", default="runs/example-char-lstm")
    parser.add_argument("--dry-run", action="store_true", help="two steps on a small slice")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")   # mxgen's log lines
    cfg = TextTrainConfig(data=args.data, out=args.out, epochs=args.epochs,
                          max_minutes=args.max_minutes, dry_run=args.dry_run,
                          num_hidden=64 if args.dry_run else 256)
    result = train_text(cfg)
    loaded = load(result["run_dir"])
    model, vocab = loaded.model, loaded.vocab
    model.hybridize(static_alloc=True)
    prompt = "def " if all(c in vocab.index for c in "def ") else vocab.chars[0]
    length = 40 if args.dry_run else 300
    print("--- temperature 0.8, top-k 10 ---")
    print(generate(model, vocab, prompt, length, temperature=0.8, top_k=10, seed=0)[0])
    print("--- beam search, width 4 ---")
    print(generate(model, vocab, prompt, length // 4, beam=4)[0])


if __name__ == "__main__":
    main()
