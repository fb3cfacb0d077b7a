"""Sample images from a trained DCGAN: a grid, single files, or a latent interpolation.

Reproducible under --seed.  --interpolate walks the latent space between the
noise vectors of --seed and --seed2 (spherical interpolation) and writes a
strip PNG and an animated GIF.
"""
import os


def get_parser(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint",
                        help="run directory (uses its best checkpoint) or a checkpoint directory")
    source.add_argument("--exported", metavar="DIR",
                        help="a folder written by mxgen export (its generator graph)")
    parser.add_argument("--num", type=int, default=64, help="images to sample (default: 64)")
    parser.add_argument("--grid", default=None, help="write a grid PNG here")
    parser.add_argument("--out-dir", default=None, help="write single PNGs into this folder")
    parser.add_argument("--interpolate", action="store_true",
                        help="latent interpolation between --seed and --seed2")
    parser.add_argument("--steps", type=int, default=10, help="interpolation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed2", type=int, default=None, help="default: --seed + 1")
    parser.add_argument("--ctx", default="cpu")
    parser.add_argument("--dry-run", action="store_true", help="sample 4 images")
    return parser


def main(args):
    import numpy as np
    from PIL import Image

    from ..data.images import make_grid, save_grid
    from ..errors import MXGenError
    from ..models.dcgan import generate_images, load_generator, slerp
    from ..utils.context import parse_ctx

    ctx = parse_ctx(args.ctx)[0]
    if args.exported:
        from ..export import load_exported
        from ..models.dcgan import DCGANConfig
        gen, meta = load_exported(args.exported, "generator", ctx)
        if meta["family"] != "dcgan":
            raise MXGenError("%s exports a %s, not a DCGAN" % (args.exported, meta["family"]))
        cfg = DCGANConfig(**meta["model"])
        base = args.exported                          # default outputs go into the export
    else:
        gen, cfg, ckpt_dir = load_generator(args.checkpoint, ctx=ctx, prefer="best")
        base = os.path.join(ckpt_dir, "..", "..")     # ... or into the run directory
    num = 4 if args.dry_run else args.num
    if num < 1:
        raise MXGenError("--num must be >= 1, got %d" % num)

    def noise_for(seed, n):
        return np.random.RandomState(seed).normal(size=(n, cfg.latent_size, 1, 1)) \
            .astype(np.float32)

    written = []
    if args.interpolate:
        a, b = noise_for(args.seed, 1)[0], noise_for(
            args.seed2 if args.seed2 is not None else args.seed + 1, 1)[0]
        steps = max(2, args.steps)
        z = np.stack([slerp(a, b, t) for t in np.linspace(0, 1, steps)])
        frames = generate_images(gen, z)
        strip = args.grid or os.path.join(base, "interpolation.png")
        written.append(save_grid(frames, strip, nrow=steps))
        gif = os.path.splitext(strip)[0] + ".gif"
        pictures = [Image.fromarray(make_grid(f[None], nrow=1, padding=0).squeeze())
                    for f in frames]
        pictures[0].save(gif, save_all=True, append_images=pictures[1:] + pictures[-2:0:-1],
                         duration=120, loop=0)
        written.append(gif)
    else:
        images = generate_images(gen, noise_for(args.seed, num))
        grid = args.grid or (None if args.out_dir else
                             os.path.join(base, "samples.png"))
        if grid:
            written.append(save_grid(images, grid))
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            for k, img in enumerate(images):
                path = os.path.join(args.out_dir, "sample_%04d.png" % k)
                Image.fromarray(make_grid(img[None], nrow=1, padding=0).squeeze()).save(path)
                written.append(path)
    for path in written[:5]:
        print(os.path.normpath(path))
    if len(written) > 5:
        print("... and %d more" % (len(written) - 5))
    return 0
