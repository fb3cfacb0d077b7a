"""Arguments shared by training commands."""

__all__ = ["add_training_args"]


def add_training_args(parser, out_default):
    g = parser.add_argument_group("run")
    g.add_argument("--ctx", default="cpu",
                   help="devices: cpu, cpu:0,1 (virtual CPU devices), gpu, gpu:0,1 (default: cpu)")
    g.add_argument("--epochs", type=int, default=None, help="number of epochs")
    g.add_argument("--batch-size", type=int, default=None, help="global batch size")
    g.add_argument("--out", default=out_default, help="run directory (default: %(default)s)")
    g.add_argument("--resume", action="store_true",
                   help="continue exactly from the latest checkpoint in --out")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    g.add_argument("--dry-run", action="store_true",
                   help="a couple of steps on a tiny slice; writes a real checkpoint")
    g.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this many minutes")
    g.add_argument("--max-steps", type=int, default=None,
                   help="stop (with a checkpoint) after this many steps in this run")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser
