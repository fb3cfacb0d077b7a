"""Export a trained model to static graphs (MXNet symbol + params, or ONNX).

Character models export their full-sequence graph and the one-step graph
generation runs (with vocab.json); DCGANs their generator; style networks
their transformer.  Any MXNet program reloads them with
mx.gluon.SymbolBlock.imports (the inputs are listed in export.json);
`mxgen generate --exported DIR` and `mxgen sample-gan --exported DIR` use
them directly.  The graphs use MXNet's own operators unless --native.
"""


def get_parser(parser):
    from ..export import FORMATS
    parser.add_argument("--checkpoint", required=True,
                        help="run directory (its best checkpoint) or a checkpoint directory")
    parser.add_argument("--out", required=True, help="new folder for the export")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="mxnet")
    parser.add_argument("--force", action="store_true",
                        help="replace --out if it holds an earlier export (and nothing else)")
    parser.add_argument("--native", action="store_true",
                        help="keep mxgen's native recurrent op where the model uses it (the"
                             " export then needs mxgen's library to load)")
    return parser


def main(args):
    from ..export import export
    meta = export(args.checkpoint, args.out, args.fmt, args.force, args.native)
    for name, graph in meta["graphs"].items():
        files = graph.get("onnx") or "%s + %s" % (graph["symbol"], graph["params"])
        print("%s: %s; inputs %s: %s" % (name, files, ", ".join(graph["inputs"]),
                                         graph["describes"]))
    if meta["requires"]:
        print("needs %s" % meta["requires"])
    print("exported %s (%s) to %s" % (meta["checkpoint"], meta["family"], args.out))
    return 0
