"""The tutorial's unrolled RNN: three characters in, the next one out, with
Dense layers shared across the three positions.

python examples/unrolled_rnn.py [--data FILE] [--epochs N] [--dry-run]
"""
import argparse

import mxgen  # noqa: F401  (threads before mxnet)
import mxnet as mx
from mxnet import autograd, gluon

from mxgen.data.batchify import WindowDataset
from mxgen.data.corpus import load_text
from mxgen.data.vocab import Vocab
from mxgen.models import get_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="stdlib", help="corpus (default: stdlib)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dry-run", action="store_true", help="one epoch on 20k characters")
    args = parser.parse_args()
    text = load_text(args.data, max_chars=20000 if args.dry_run else 500000)
    vocab = Vocab.from_text(text)
    xs, ys = WindowDataset(vocab.encode(text), 3).arrays()              # (n, 3), (n,)
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(xs, ys), batch_size=args.batch_size,
                                   shuffle=True, last_batch="discard")
    mx.random.seed(0)
    model = get_model("unrolled_rnn_3char", vocab_size=len(vocab))
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 2e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for epoch in range(1 if args.dry_run else args.epochs):
        total, count = mx.nd.zeros(1), 0
        for x, y in loader:
            with autograd.record():
                loss = loss_fn(model(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            total += loss.sum()
            count += x.shape[0]
        print("epoch %d: loss %.3f nats/char" % (epoch + 1, total.asscalar() / count))
    # greedy continuation, one character at a time from the last three
    seq = vocab.encode(text[:3]).tolist()
    for _ in range(60):
        logits = model(mx.nd.array([seq[-3:]]))
        seq.append(int(logits.argmax(axis=1).asscalar()))
    print("sample:", repr(vocab.decode(seq)))


if __name__ == "__main__":
    main()
