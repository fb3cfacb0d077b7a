"""The tutorial's first model: heights of martians and humans, one Gaussian per class.

Fits each class by maximum likelihood, prints the statistics, samples new
heights, classifies a few, and "interbreeds" the two populations (draws
from their equal mixture).  python examples/gaussian_heights.py [--dry-run]
"""
import argparse

import numpy as np

import mxgen  # noqa: F401  (threads before mxnet)
from mxgen.models import GaussianClassModel
from mxgen.models.gaussian import default_heights


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="few samples")
    args = parser.parse_args()
    num = 20 if args.dry_run else args.samples

    model = GaussianClassModel().fit(default_heights())
    for name, fit in model.stats().items():
        print("%-8s n=%d  mean %.1f cm  sigma %.2f (MLE) / %.2f (unbiased)"
              % (name, fit["count"], fit["mean"], fit["std"], fit["std_unbiased"]))
    for name in model.classes:
        draws = model.sample(name, num, seed=args.seed)
        print("%d sampled %s heights: mean %.1f, sd %.1f" % (num, name, draws.mean(),
                                                               draws.std()))
    heights = [150, 200, 225, 250, 300]
    print("classified:", ", ".join("%d cm -> %s" % (h, c)
                                   for h, c in zip(heights, model.classify(heights))))
    mixed = model.sample_interbred(num, seed=args.seed)
    print("%d interbred heights: mean %.1f, range %.0f-%.0f"
          % (num, mixed.mean(), np.min(mixed), np.max(mixed)))


if __name__ == "__main__":
    main()
