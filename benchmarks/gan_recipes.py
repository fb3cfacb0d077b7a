"""The dcgan and stable recipes of ``mxgen train-gan`` side by side.

    python benchmarks/gan_recipes.py DCGAN_RUN... STABLE_RUN... [--out docs/gan-recipes.png] \
        [--grids PNG] [--also "LABEL=RUN" ...]
    python benchmarks/gan_recipes.py --train --data shapes --minutes 3 --seeds 0 1 2 \\
        --image-size 32 --root /tmp/recipes [--out ...]

Reads (or first trains, same seed and wall-clock budget for each recipe)
the runs' ``metrics.jsonl``: the Frechet distance after every epoch against
the held-out images, by minutes of training, and the images per second.
Writes a plot of the distance curves and a JSON summary beside it (final
and best distance, iterations per second, the ratio stable / dcgan), and
with ``--train`` also reports whether any run diverged (a non-finite loss or
a distance that ends above its starting value).
"""
import argparse
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RECIPES = ("dcgan", "stable")


def read_run(run_dir):
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"),
                                                 encoding="utf-8")]
    evals = [r for r in records if r["kind"] == "eval"]
    train = [r for r in records if r["kind"] == "train"]
    speeds = [r["images_per_s"] for r in train]
    from mxgen.utils.checkpoint import read_json, resolve
    batch = read_json(resolve(run_dir, "latest"), "config.json")["train"]["batch_size"]
    curve = [(r.get("elapsed_s", 0.0) / 60.0, r["frechet_distance"]) for r in evals]
    finite = all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in train)
    return {"curve": curve, "final_fd": curve[-1][1], "best_fd": min(fd for _, fd in curve),
            "initial_fd": curve[0][1], "steps": train[-1]["step"] if train else 0,
            "images_per_s": sum(speeds) / len(speeds) if speeds else None,
            "iterations_per_s": (sum(speeds) / len(speeds) / batch) if speeds and batch
            else None, "finite": finite,
            "diverged": not finite or curve[-1][1] > curve[0][1]}


def train(args):
    runs = {}
    for seed in args.seeds:
        for recipe in RECIPES:
            out = os.path.join(args.root, "%s-seed%d" % (recipe, seed))
            cmd = [sys.executable, "-m", "mxgen", "train-gan", "--data", args.data,
                   "--recipe", recipe, "--image-size", str(args.image_size), "--channels",
                   str(args.channels), "--max-minutes", str(args.minutes), "--epochs", "100000",
                   "--seed", str(seed), "--dtype", args.dtype, "--out", out, "--no-progress",
                   "--quiet"]
            subprocess.run(cmd, check=True)
            runs.setdefault(recipe, []).append(out)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", help="run folders: dcgan's, then as many of"
                                                " stable's (the same seeds, in order)")
    parser.add_argument("--train", action="store_true", help="train the runs first")
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--root", default="runs/recipes")
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", default=None, help="plot PNG (JSON summary beside it)")
    parser.add_argument("--grids", default=None, metavar="PNG",
                        help="also write 16 samples of each recipe's final generator (EMA"
                             " weights where the run has them), from the same noise, side by"
                             " side")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=RUN",
                        help="another run (an ablation) to read and plot beside the recipes;"
                             " repeatable")
    args = parser.parse_args()
    also = []
    for item in args.also:
        label, sep, run = item.partition("=")
        if not sep or not label or not run:
            parser.error("--also takes LABEL=RUN_FOLDER, got %r" % item)
        also.append((label, run))
    if args.train:
        runs = train(args)
    elif args.runs and len(args.runs) % 2 == 0:
        half = len(args.runs) // 2
        runs = {"dcgan": args.runs[:half], "stable": args.runs[half:]}
    else:
        parser.error("give run folders, dcgan's then as many of stable's, or --train")
    results = {recipe: [dict(read_run(r), run=r) for r in dirs] for recipe, dirs in runs.items()}
    for label, run in also:
        results.setdefault(label, []).append(dict(read_run(run), run=run))
    summary = {"results": results, "cpu": _cpu(), "ratio_final_fd_stable_over_dcgan": [
        s["final_fd"] / d["final_fd"] for d, s in zip(results["dcgan"], results["stable"])]}
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    for recipe, items in results.items():
        for r in items:
            print("%-7s %s: FD %.1f -> %.1f (best %.1f), %d steps, %.2f it/s%s"
                  % (recipe, r["run"], r["initial_fd"], r["final_fd"], r["best_fd"], r["steps"],
                     r["iterations_per_s"] or float("nan"), ", DIVERGED" if r["diverged"]
                     else ""))
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.2))
        colors = ("tab:blue", "tab:orange", "tab:gray", "tab:green", "tab:purple")
        for n, (recipe, items) in enumerate(results.items()):
            extra = recipe not in RECIPES
            for k, r in enumerate(items):
                xs, ys = zip(*r["curve"])
                ax.plot(xs, ys, "o--" if extra else "o-", color=colors[n % len(colors)], ms=3,
                        alpha=(0.7 if extra else 1) if k == 0 else 0.5, lw=1 if extra else 1.5,
                        label="%s (%.2f it/s)" % (recipe, r["iterations_per_s"] or 0)
                        if k == 0 else None)
        ax.set_xlabel("minutes of training")
        ax.set_ylabel("Frechet distance (random_conv_v1, held-out images)")
        ax.set_yscale("log")
        ax.set_title(args.title or "train-gan --recipe dcgan vs stable")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        print("wrote", args.out)
    if args.grids:
        write_grids(results, args.grids)


def write_grids(results, path, count=16, seed=5):
    """The recipes' final samples (first run of each), one panel per recipe."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mxnet as mx
    import numpy as np
    from mxgen.data.images import make_grid
    from mxgen.models import load
    from mxgen.models.dcgan import generate_images
    fig, axes = plt.subplots(1, len(RECIPES), figsize=(3.2 * len(RECIPES), 3.5))
    for ax, recipe in zip(axes, RECIPES):
        r = results[recipe][0]
        loaded = load(r["run"], prefer="latest")
        gen, latent = loaded.model, loaded.config.latent_size
        noise = mx.nd.array(np.random.RandomState(seed).normal(size=(count, latent, 1, 1)))
        grid = make_grid(generate_images(gen, noise), int(math.sqrt(count)))
        ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid,
                  cmap="gray" if grid.shape[2] == 1 else None)
        ax.set_title("%s: FD %.1f" % (recipe, r["final_fd"]), fontsize=10, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print("wrote", path)


def _cpu():
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
