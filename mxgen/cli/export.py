"""Export a trained model to static graphs (MXNet symbol + params, or ONNX).

Character models export their full-sequence graph and the one-step graph
generation runs (with vocab.json); DCGANs their generator; style networks
their transformer.  Any MXNet program reloads them with
mx.gluon.SymbolBlock.imports (the inputs are listed in export.json);
`mxgen generate --exported DIR` and `mxgen sample-gan --exported DIR` use
them directly.  The graphs use MXNet's own operators unless --native.
"""
from ..export import ExportConfig
from .common import add_config_args, config_from_args

CONFIG = ExportConfig


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def main(args):
    from ..export import export
    cfg = config_from_args(CONFIG, args)[0]
    meta = export(cfg.checkpoint, cfg.out, cfg.format, cfg.force, cfg.native, cfg.dtype,
                  cfg.ema)
    for name, graph in meta["graphs"].items():
        files = graph.get("onnx") or "%s + %s" % (graph["symbol"], graph["params"])
        print("%s: %s; inputs %s: %s" % (name, files, ", ".join(graph["inputs"]),
                                         graph["describes"]))
    if meta["requires"]:
        print("needs %s" % meta["requires"])
    print("exported %s (%s) to %s" % (meta["checkpoint"], meta["family"], cfg.out))
    return 0
