"""Train a DCGAN on a folder of images (or the embedded 'shapes' set).

Images are converted to --channels, resized and centre-cropped to
--image-size (smaller images are upscaled with a warning).  After every epoch:
a sample grid from a fixed noise vector, the Frechet distance between real and
generated images (feature network named in the log), and a checkpoint.
"""
from .common import add_training_args


def get_parser(parser):
    parser.add_argument("--data", default=None,
                        help="image folder (recursive), or 'shapes' (default, no download)")
    m = parser.add_argument_group("model")
    m.add_argument("--image-size", type=int, choices=[32, 64], default=None,
                   help="64 (default) or 32 (one stage fewer)")
    m.add_argument("--latent-size", type=int, default=None, help="noise size (default: 100)")
    m.add_argument("--ngf", type=int, default=None, help="generator width (default: 64)")
    m.add_argument("--ndf", type=int, default=None, help="discriminator width (default: 64)")
    m.add_argument("--channels", type=int, choices=[1, 3], default=None,
                   help="1 (grayscale) or 3 (default)")
    t = parser.add_argument_group("training")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 2e-4)")
    t.add_argument("--beta1", type=float, default=None, help="Adam beta1 (default: 0.5)")
    t.add_argument("--num-workers", type=int, default=None,
                   help="image-decoding processes (default: 2)")
    t.add_argument("--fid-samples", type=int, default=None,
                   help="real and generated images for the Frechet distance (default: 500)")
    t.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    add_training_args(parser, "runs/gan")
    return parser


_FIELDS = ["data", "image_size", "latent_size", "ngf", "ndf", "channels", "lr", "beta1",
           "num_workers", "fid_samples", "max_images", "ctx", "epochs", "batch_size", "out",
           "resume", "seed", "dry_run", "max_minutes", "max_steps"]


def main(args):
    from ..train.gan import GANTrainConfig, train_gan

    given = {k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None}
    cfg = GANTrainConfig(**given)
    cfg.progress = not args.no_progress
    result = train_gan(cfg, explicit=set(given))
    print("checkpoint: %s" % result["checkpoint"])
    print("Frechet distance: %.3f (%s features); best %.3f"
          % (result["frechet_distance"], result["feature_net"], result["best_fd"]))
    print("sample grid: %s" % result["grid"])
    return 0
