"""The tutorial's DCGAN: train on an image folder, then sample a grid and a
latent-space walk.

python examples/dcgan.py [--data FOLDER] [--epochs N] [--dry-run]
(the default data is mxgen's embedded 'shapes' set: no download)
"""
import argparse
import logging
import os

import numpy as np

import mxgen  # noqa: F401  (threads before mxnet)
from mxgen.data.images import save_grid
from mxgen.models import load
from mxgen.models.dcgan import generate_images, slerp
from mxgen.train.gan import GANTrainConfig, train_gan


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--image-size", type=int, default=64, choices=[32, 64])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/example-dcgan")
    parser.add_argument("--dry-run", action="store_true", help="two iterations")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")   # mxgen's log lines
    cfg = GANTrainConfig(data=args.data, out=args.out, image_size=args.image_size,
                         epochs=args.epochs, dry_run=args.dry_run,
                         ngf=16 if args.dry_run else 64, ndf=16 if args.dry_run else 64)
    result = train_gan(cfg)
    loaded = load(result["run_dir"])
    gen, config, out = loaded.model, loaded.config, result["run_dir"]
    rng = np.random.RandomState(0)
    noise = rng.normal(size=(16, config.latent_size, 1, 1)).astype(np.float32)
    print("grid:", save_grid(generate_images(gen, noise), os.path.join(out, "grid.png")))
    walk = np.stack([slerp(noise[0], noise[1], t) for t in np.linspace(0, 1, 8)])
    print("walk:", save_grid(generate_images(gen, walk), os.path.join(out, "walk.png"),
                             nrow=8))


if __name__ == "__main__":
    main()
