"""float32 against bfloat16 training, same seed, same batches: the loss curves.

    python benchmarks/loss_curves.py [--steps 300] [--out docs/precision-loss.png]

Trains the default character LSTM (train-text's defaults: 2x256, embed 64,
dropout 0.2 through mxgen's native dropout, so both runs draw the same
masks) on the embedded stdlib corpus twice, on mxgen's native recurrent
kernels in float32 and in bfloat16, and plots both training curves and the
validation points; the numbers go beside the plot as JSON.  Quality, not
speed: run it on a bfloat16 CPU (with AVX512_BF16 or AMX) or it measures
the emulated path.
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxgen  # noqa: E402,F401
from mxgen import _native  # noqa: E402
from mxgen._env import cpu_model  # noqa: E402
from mxgen.train.text import TextTrainConfig, train_text  # noqa: E402


def curves(steps, seed, root):
    out = {}
    for dtype in ("float32", "bfloat16"):
        run = os.path.join(root, dtype)
        train_text(TextTrainConfig(data="stdlib", out=run, max_steps=steps, epochs=100,
                                   log_interval=10, seed=seed, progress=False,
                                   rnn_impl="native", dropout_impl="native", dtype=dtype),
                   log=lambda *_: None)
        records = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
        out[dtype] = {
            "train": [(r["step"], r["train_bpc"]) for r in records if r["kind"] == "train"],
            "val": [(r["step"], r["val_bpc"]) for r in records
                    if r["kind"] == "val" and "val_bpc" in r]}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("docs", "precision-loss.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        data = curves(args.steps, args.seed, root)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for dtype, style in (("float32", "-"), ("bfloat16", "--")):
        steps, bpc = zip(*data[dtype]["train"])
        ax.plot(steps, bpc, style, label="%s train" % dtype)
        if data[dtype]["val"]:
            vs, vb = zip(*data[dtype]["val"])
            ax.plot(vs, vb, "o" if dtype == "float32" else "x", label="%s validation" % dtype)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_title("char-LSTM 2x256 on the stdlib corpus, seed %d: float32 vs bfloat16"
                 % args.seed, fontsize=9)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    record = dict(data, cpu=cpu_model(), kernels=_native.isa(), steps=args.steps,
                  seed=args.seed, command="python benchmarks/loss_curves.py --steps %d"
                  % args.steps)
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    last = {d: data[d]["train"][-1][1] for d in data}
    print("final train bpc: float32 %.4f, bfloat16 %.4f; wrote %s"
          % (last["float32"], last["bfloat16"], args.out))


if __name__ == "__main__":
    main()
