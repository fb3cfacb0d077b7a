"""Neural style transfer by optimisation (Gatys et al.): repaint a content
image with a style image's Gram statistics.

python examples/style_transfer.py [--content IMG] [--style IMG] [--size 256] [--dry-run]
(without images it draws its own: mxgen's 'shapes' as content, colour stripes
as style; the feature network is random_multiscale_v1, which needs no
download; pass --feature-net vgg19 when its weights are in the MXNet cache)
"""
import argparse

import numpy as np

import mxgen  # noqa: F401  (threads before mxnet)
from mxgen.data.images import draw_shapes
from mxgen.models.features import FEATURE_NETS, RANDOM_NET, get_feature_net
from mxgen.data.images import save_side_by_side
from mxgen.stylize import load_content_and_style, stylize_optim


def drawn_images(size):
    """A content image (shapes) and a style image (diagonal stripes), [0, 1]."""
    content = draw_shapes(1, size, 3, seed=1).astype(np.float32) / 255.0      # (1, 3, S, S)
    y, x = np.mgrid[:size, :size]
    palette = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.9], [0.95, 0.9, 0.2]], dtype=np.float32)
    style = palette[((x + y) // max(2, size // 16)) % 3].transpose(2, 0, 1)[None]
    return content, style


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", default=None)
    parser.add_argument("--style", default=None)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--feature-net", default=RANDOM_NET, choices=FEATURE_NETS)
    parser.add_argument("--out", default="style-transfer.png")
    parser.add_argument("--dry-run", action="store_true", help="64 px, 5 iterations")
    args = parser.parse_args()
    size, iterations = (64, 5) if args.dry_run else (args.size, args.iterations)
    if args.content and args.style:
        content, style = load_content_and_style(args.content, args.style, size)
    else:
        content, style = drawn_images(size)
    # the losses are measured through a fixed feature network
    net, description = get_feature_net(args.feature_net)
    print("feature network:", description)
    result, history = stylize_optim(content, style, net, iterations=iterations)
    for scale in history:
        print("%dx%d: total loss %.4f -> %.4f (style %.4f -> %.4f)"
              % tuple(scale["size"] + [scale["before"]["total"], scale["after"]["total"],
                                       scale["before"]["style"], scale["after"]["style"]]))
    print("content | style | result:", save_side_by_side([content, style, result], args.out))


if __name__ == "__main__":
    main()
