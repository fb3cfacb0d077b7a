"""Sample images from a trained DCGAN: a grid, single files, or a latent interpolation.

Reproducible under --seed.  --interpolate walks the latent space between the
noise vectors of --seed and --seed2 (spherical interpolation) and writes a
strip PNG and an animated GIF.
"""
import os
import sys
from dataclasses import dataclass
from typing import Optional

from ..fields import PRECISIONS, field
from .common import add_config_args, config_from_args


@dataclass
class SampleCommand:
    """``mxgen sample-gan``'s settings."""
    checkpoint: Optional[str] = field(None, "run directory (uses its best checkpoint) or a"
                                            " checkpoint directory", group="source",
                                      exclusive="source", required=True)
    exported: Optional[str] = field(None, "a folder written by mxgen export (its generator"
                                          " graph)", group="source", exclusive="source",
                                    required=True)
    num: int = field(64, "images to sample", group="sampling")
    grid: Optional[str] = field(None, "write a grid PNG here (default: samples.png in the run"
                                      " folder)", group="output")
    out_dir: Optional[str] = field(None, "write single PNGs (sample_0000.png, ...) into this"
                                         " folder", group="output")
    force: bool = field(False, "replace output files that exist", group="output")
    interpolate: bool = field(False, "latent interpolation between --seed and --seed2",
                              group="sampling")
    steps: int = field(10, "interpolation steps", group="sampling")
    seed: int = field(0, "noise seed", group="sampling")
    seed2: Optional[int] = field(None, "the interpolation's end (default: --seed + 1)",
                                 group="sampling")
    ctx: str = field("cpu", "device, e.g. cpu or gpu:0", group="run")
    dtype: str = field("auto", "what the generator computes in: bfloat16 (CPUs), float16"
                               " (GPUs), float32, or auto: the faster here, as measured (a"
                               " checkpoint only; an export keeps the precision it was"
                               " exported in)", group="run", choices=PRECISIONS)
    ema: bool = field(True, "sample from the moving average of the generator's weights where"
                            " the checkpoint has one (a run trained with --ema)",
                      group="sampling")
    dry_run: bool = field(False, "sample 4 images", group="run")


CONFIG = SampleCommand


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def _check(args):
    from ..errors import MXGenError
    from ..utils.files import check_image_extension
    for name in ("seed", "seed2"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 2 ** 32:
            raise MXGenError("--%s must be in [0, 2**32), got %d" % (name, value))
    if args.num < 1:
        raise MXGenError("--num must be >= 1, got %d" % args.num)
    if args.steps < 2:
        raise MXGenError("--steps must be >= 2, got %d" % args.steps)
    if args.grid is not None:
        check_image_extension(args.grid, "--grid")
    if args.out_dir is not None and os.path.exists(args.out_dir) and \
            not os.path.isdir(args.out_dir):
        raise MXGenError("--out-dir %s is a file, not a folder" % args.out_dir)


def _outputs(args, base, num):
    """``{path: what}`` of every file this call writes."""
    if args.interpolate:
        strip = args.grid or os.path.join(base, "interpolation.png")
        return {strip: "--grid", os.path.splitext(strip)[0] + ".gif": "the animation"}
    outputs = {}
    grid = args.grid or (None if args.out_dir else os.path.join(base, "samples.png"))
    if grid:
        outputs[grid] = "--grid"
    if args.out_dir:
        for k in range(num):
            outputs[os.path.join(args.out_dir, "sample_%04d.png" % k)] = "--out-dir file"
    return outputs


def main(args):
    import numpy as np
    from PIL import Image

    from ..data.images import make_grid, save_grid
    from ..errors import MXGenError
    from ..models import load
    from ..models.dcgan import generate_images, slerp
    from ..nn.precision import exported_dtype, inference_dtype
    from ..utils.context import parse_ctx
    from ..utils.files import atomic_output, check_outputs

    quiet = getattr(args, "quiet", False)
    args = config_from_args(CONFIG, args)[0]
    _check(args)
    ctx = parse_ctx(args.ctx)[0]
    if args.exported:
        from ..export import load_exported
        from ..models.dcgan import DCGANConfig
        gen, meta = load_exported(args.exported, "generator", ctx)
        if meta["family"] != "dcgan":
            raise MXGenError("%s exports a %s, not a DCGAN" % (args.exported, meta["family"]))
        cfg = DCGANConfig(**meta["model"])
        base = args.exported                          # default outputs go into the export
        precision = exported_dtype(args.dtype, meta)
    else:
        loaded = load(args.checkpoint, ctx=ctx, family="dcgan", ema=None if args.ema else False)
        gen, cfg = loaded.model, loaded.config
        base = os.path.join(loaded.ckpt_dir, "..", "..")   # ... or into the run directory
        precision = inference_dtype(
            gen, args.dtype, ctx, "sampling", "mxgen._timing:generator_dtype",
            {"image_size": cfg.image_size, "latent_size": cfg.latent_size, "ngf": cfg.ngf,
             "nc": cfg.nc, "batch": min(args.num, 256)})
    if not quiet:                        # stdout lists the files written
        print("precision: %s (%s)" % precision, file=sys.stderr)
        if not args.exported:
            print("weights: %s" % ("the moving average (EMA)" if loaded.weights == "ema"
                                   else "as trained"), file=sys.stderr)
    num = 4 if args.dry_run else args.num
    outputs = _outputs(args, base, num)
    check_outputs(outputs, force=args.force)

    def noise_for(seed, n):
        return np.random.RandomState(seed).normal(size=(n, cfg.latent_size, 1, 1)) \
            .astype(np.float32)

    def save_png(pixels, path):
        with atomic_output(path) as tmp:
            Image.fromarray(pixels).save(tmp)
        return path

    written = []
    if args.interpolate:
        strip, gif = list(outputs)
        a, b = noise_for(args.seed, 1)[0], noise_for(
            args.seed2 if args.seed2 is not None else args.seed + 1, 1)[0]
        z = np.stack([slerp(a, b, t) for t in np.linspace(0, 1, args.steps)])
        frames = generate_images(gen, z)
        written.append(save_grid(frames, strip, nrow=args.steps))
        pictures = [Image.fromarray(make_grid(f[None], nrow=1, padding=0).squeeze())
                    for f in frames]
        with atomic_output(gif) as tmp:
            pictures[0].save(tmp, save_all=True, append_images=pictures[1:] + pictures[-2:0:-1],
                             duration=120, loop=0)
        written.append(gif)
    else:
        images = generate_images(gen, noise_for(args.seed, num))
        for path, what in outputs.items():
            if what == "--grid":
                written.append(save_grid(images, path))
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            for k, img in enumerate(images):
                written.append(save_png(make_grid(img[None], nrow=1, padding=0).squeeze(),
                                        os.path.join(args.out_dir, "sample_%04d.png" % k)))
    for path in written[:5]:
        print(os.path.normpath(path))
    if len(written) > 5:
        print("... and %d more" % (len(written) - 5))
    return 0
