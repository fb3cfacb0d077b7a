"""Generate text from a trained character-level model.

Default: stateful sampling (the prompt primes the state, then one step per
character).  --temperature 0 is greedy; --top-k / --top-p restrict sampling;
--beam K runs beam search.
"""


def get_parser(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint",
                        help="run directory (uses its best checkpoint) or a checkpoint directory")
    source.add_argument("--exported", metavar="DIR",
                        help="a folder written by mxgen export (its step graph; stateful"
                             " sampling only)")
    parser.add_argument("--prompt", default=None,
                        help="text to continue (default: a newline, if in the vocabulary)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (1 = off)")
    parser.add_argument("--beam", type=int, default=0, help="beam width (0 = sample)")
    parser.add_argument("--num-samples", type=int, default=1, help="continuations, as one batch")
    parser.add_argument("--method", choices=["stateful", "window"], default="stateful")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--ctx", default="cpu", help="device, e.g. cpu or gpu:0")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="for a model trained with --samples: generate whole samples from"
                             " their start (after --prompt, if given), each ending at its end"
                             " mark; --length is the cap")
    parser.add_argument("--dry-run", action="store_true", help="generate 20 characters")
    return parser


def main(args):
    import sys

    from ..generation import generate, generation_kernel
    from ..models.char_rnn import load_char_rnn
    from ..utils.context import parse_ctx

    ctx = parse_ctx(args.ctx)[0]
    length = 20 if args.dry_run else args.length
    if args.exported:
        from ..errors import MXGenError
        from ..export import generate_exported
        if args.beam or args.method != "stateful":
            raise MXGenError("--exported runs stateful sampling; --beam and --method window"
                             " need --checkpoint")
        if length < 0 or args.num_samples < 1:
            raise MXGenError("--length must be >= 0 and --num-samples >= 1")
        prompt = args.prompt if args.prompt is not None else ("" if args.stop_at_eos else "\n")
        texts = generate_exported(args.exported, prompt, length, args.temperature, args.top_k,
                                  args.top_p, args.num_samples, args.seed, args.stop_at_eos,
                                  ctx)
        return _print(texts, prompt, length, args.stop_at_eos)
    model, vocab, ckpt_dir, _ = load_char_rnn(args.checkpoint, ctx=ctx)
    model.hybridize(static_alloc=True)
    prompt = args.prompt
    if prompt is None:
        prompt = "" if args.stop_at_eos else ("\n" if "\n" in vocab.index else vocab.chars[0])
    if args.method == "stateful" and not args.beam:
        native, reason = generation_kernel(model, args.num_samples, ctx)
        print("generation kernel: %s (%s)" % ("mxgen native op" if native
                                              else "hybridized per-step loop", reason),
              file=sys.stderr)
    texts = generate(model, vocab, prompt, length, temperature=args.temperature,
                     top_k=args.top_k, top_p=args.top_p, num_samples=args.num_samples,
                     beam=args.beam, method=args.method, seed=args.seed, ctx=ctx,
                     stop_at_eos=args.stop_at_eos)
    return _print(texts, prompt, length, args.stop_at_eos)


def _print(texts, prompt, length, stop_at_eos):
    import sys
    if stop_at_eos:                     # one sample a line, as the corpus had them
        ended = sum(len(t) < len(prompt) + length for t in texts)
        for text in texts:
            print(text)
        print("%d of %d samples ended by themselves%s" % (
            ended, len(texts), "" if ended == len(texts) else
            "; the rest were cut at --length %d" % length), file=sys.stderr)
        return 0
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print("--- sample %d ---" % (i + 1))
        print(text)
    return 0
