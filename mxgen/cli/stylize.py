"""Stylise an image: optimise its pixels (Gatys et al.) or run a trained network.

--method optim (default) needs no training: it starts from the content image
and lowers content + style + total-variation losses through a feature
network (by default random_multiscale_v1, fixed random weights, no
download; --feature-net vgg16/vgg19 with pretrained weights gives better
results).  --method net runs a network trained by `mxgen train-style`
(--model RUN_DIR) in one pass.  Writes OUT, OUT's side-by-side
(content | style | result) and, for optim, OUT's metrics (JSON lines).
"""
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

from ..fields import PRECISIONS, field
from ..stylize import StylizeConfig
from .common import add_config_args, config_from_args


@dataclass
class StylizeCommand(StylizeConfig):
    """``mxgen stylize``'s settings: stylisation's own, inputs and outputs."""
    content: Optional[str] = field(None, "the content image", group="images", required=True)
    style: Optional[str] = field(None, "the style image (optim: required; net: shown beside"
                                       " the result)", group="images")
    model: Optional[str] = field(None, "run or checkpoint of train-style (--method net)",
                                 group="images")
    out: str = field("stylized.png", "output image; OUT's side-by-side and metrics go beside"
                                     " it", group="images")
    force: bool = field(False, "replace outputs that exist (never an input)", group="images")
    ctx: str = field("cpu", "device, e.g. cpu or gpu:0", group="run")
    dtype: str = field("auto", "what the convolutions compute in: bfloat16 (CPUs), float16"
                               " (GPUs), float32, or auto: the faster here, as measured",
                       group="run", choices=PRECISIONS)
    progress: bool = field(True, "progress bar", group="run")
    dry_run: bool = field(False, "64 px, 5 iterations (a smoke test)", group="run")


CONFIG = StylizeCommand


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def _check(args):
    """Every flag and every output, before any image is read or optimised:
    returns ``(side-by-side path, metrics path or None)``."""
    from ..errors import MXGenError
    from ..utils.files import check_image_extension, check_outputs
    if args.size < 16:
        raise MXGenError("--size must be >= 16, got %d" % args.size)
    if args.iterations < 1:
        raise MXGenError("--iterations must be >= 1, got %d" % args.iterations)
    for name in ("content_weight", "style_weight", "tv_weight", "lr"):
        if not getattr(args, name) >= 0:
            raise MXGenError("--%s must be >= 0, got %s" % (name.replace("_", "-"),
                                                            getattr(args, name)))
    if args.method == "optim" and not args.style:
        raise MXGenError("--method optim needs --style IMG")
    if args.method == "net" and not args.model:
        raise MXGenError("--method net needs --model RUN_DIR (a run of mxgen train-style)")
    check_image_extension(args.out)
    stem = os.path.splitext(args.out)[0]
    side = stem + "-side.png"
    metrics = stem + ".metrics.jsonl" if args.method == "optim" else None
    check_outputs({args.out: "--out", side: "the side-by-side image",
                   metrics: "the metrics file"},
                  inputs={args.content: "--content", args.style: "--style"}, force=args.force)
    return side, metrics


def main(args):
    import mxnet as mx
    quiet = getattr(args, "quiet", False)
    args = config_from_args(CONFIG, args)[0]

    from ..data.images import read_image, save_image, save_side_by_side
    from ..nn.precision import explain_precision, inference_dtype, set_compute_dtype
    from ..stylize import LOSS_NAMES, load_content_and_style, stylize_net, stylize_optim
    from ..utils.context import parse_ctx
    from ..utils.files import atomic_output

    side_path, metrics_path = _check(args)
    ctx = parse_ctx(args.ctx)[0]
    size, iterations = (64, 5) if args.dry_run else (args.size, args.iterations)
    if args.method == "net":
        from ..models import load
        loaded = load(args.model, ctx=ctx, family="style_net")
        net, meta, ckpt_dir = loaded.model, loaded.meta, loaded.ckpt_dir
        content, _ = read_image(args.content, size=size, what="content image", multiple=4)
        precision = inference_dtype(
            net, args.dtype, ctx, "stylizing", "mxgen._timing:transformer_dtype",
            {"width": net.config.width, "residual": net.config.residual,
             "height": content.shape[2], "width_px": content.shape[3]})
        if not quiet:
            print("precision: %s (%s)" % precision, file=sys.stderr)
        started = time.time()
        result = stylize_net(net, content, ctx)
        seconds = time.time() - started
        save_image(result, args.out)
        style_path = args.style or meta.get("style")
        shown = [content, result]
        if style_path and os.path.isfile(style_path):
            shown.insert(1, read_image(style_path, shorter=min(content.shape[2:]),
                                       what="style image")[0])
        save_side_by_side(shown, side_path)
        print("stylised %s with %s (%dx%d, %.2f s); wrote %s and %s"
              % (args.content, ckpt_dir, content.shape[3], content.shape[2], seconds, args.out,
                 side_path))
        return 0

    from tqdm import tqdm

    from ..models.features import get_feature_net
    mx.random.seed(args.seed)
    feature_net, description = get_feature_net(args.feature_net, args.vgg_params, ctx=ctx)
    content, style = load_content_and_style(args.content, args.style, size)
    print("feature network: %s" % description, file=sys.stderr)
    dtype, reason = explain_precision(args.dtype, [ctx], "the feature network",
                                      "mxgen._timing:features_dtype",
                                      {"height": content.shape[2], "width": content.shape[3]})
    set_compute_dtype(feature_net, dtype)
    print("precision: %s (%s)" % (dtype, reason), file=sys.stderr)
    bars = {}
    records = []

    def on_iteration(scale, i, values):
        bar = bars.get(scale)
        if bar is None:
            if bars:
                bars[scale - 1].close()
            bar = bars[scale] = tqdm(total=iterations, disable=not args.progress,
                                     desc="scale %d" % (scale + 1), unit="it")
        bar.update(1)
        if i % 10 == 9 or i == iterations - 1:          # one sync per 10 iterations
            numbers = [float(v.asscalar()) for v in values]
            bar.set_postfix(total="%.4f" % numbers[0], style="%.4f" % numbers[2])
            records.append(dict(zip(LOSS_NAMES, numbers), kind="iteration", scale=scale + 1,
                                iteration=i + 1, it_per_s=bar.format_dict["rate"]))

    started = time.time()
    result, history = stylize_optim(
        content, style, feature_net, iterations, args.content_weight, args.style_weight,
        args.tv_weight, args.lr, args.optimizer, args.init, args.multiscale,
        args.seed, ctx, on_iteration=on_iteration)
    for bar in bars.values():
        bar.close()
    seconds = time.time() - started
    save_image(result, args.out)
    save_side_by_side([content, style, result], side_path)
    summary = {"kind": "summary", "feature_net": description, "seconds": round(seconds, 2),
               "scales": history, "content": args.content, "style": args.style,
               "size": [int(result.shape[3]), int(result.shape[2])]}
    with atomic_output(metrics_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records + [summary]:
            f.write(json.dumps(record) + "\n")
    first, last = history[0]["before"], history[-1]["after"]
    print("losses (total / content / style / tv): %.4f / %.4f / %.4f / %.4f before, "
          "%.4f / %.4f / %.4f / %.4f after (%d scale%s, %.1f s)"
          % (first["total"], first["content"], first["style"], first["tv"], last["total"],
             last["content"], last["style"], last["tv"], len(history),
             "" if len(history) == 1 else "s", seconds))
    print("wrote %s, %s and %s" % (args.out, side_path, metrics_path))
    return 0
