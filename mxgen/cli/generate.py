"""Generate text from a trained character-level model.

Default: stateful sampling (the prompt primes the state, then one step per
character).  --temperature 0 is greedy; --top-k / --top-p restrict sampling;
--beam K runs beam search.
"""
import sys
from dataclasses import dataclass
from typing import Optional

from ..fields import field
from ..generation import GenerateConfig
from .common import add_config_args, config_from_args


@dataclass
class GenerateCommand(GenerateConfig):
    """``mxgen generate``'s settings: generation's own, and where from."""
    checkpoint: Optional[str] = field(None, "run directory (uses its best checkpoint) or a"
                                            " checkpoint directory", group="source",
                                      exclusive="source", required=True)
    exported: Optional[str] = field(None, "a folder written by mxgen export (its step graph;"
                                          " stateful sampling only)", group="source",
                                    exclusive="source", required=True)
    prompt: Optional[str] = field(None, "text to continue (default: a newline, if in the"
                                        " vocabulary)", group="generation")
    ctx: str = field("cpu", "device, e.g. cpu or gpu:0", group="run")
    dry_run: bool = field(False, "generate 20 characters", group="run")


CONFIG = GenerateCommand


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def main(args):
    from ..errors import MXGenError
    from ..generation import default_prompt, generate, generation_kernel
    from ..models import load
    from ..utils.context import parse_ctx

    cfg, _ = config_from_args(CONFIG, args)
    ctx = parse_ctx(cfg.ctx)[0]
    length = 20 if cfg.dry_run else cfg.length
    if length < 0 or cfg.num_samples < 1:
        raise MXGenError("--length must be >= 0 and --num-samples >= 1")
    if cfg.exported:
        from ..export import generate_exported
        if cfg.beam or cfg.method != "stateful":
            raise MXGenError("--exported runs stateful sampling; --beam and --method window"
                             " need --checkpoint")
        texts = generate_exported(cfg.exported, cfg.prompt, length, cfg.temperature, cfg.top_k,
                                  cfg.top_p, cfg.num_samples, cfg.seed, cfg.stop_at_eos, ctx,
                                  cfg.dtype)
        return _print(texts, cfg.prompt or "", length, cfg.stop_at_eos)
    loaded = load(cfg.checkpoint, ctx=ctx, family="char_rnn")
    model, vocab = loaded.model, loaded.vocab
    model.hybridize(static_alloc=True)
    prompt = cfg.prompt if cfg.prompt is not None else default_prompt(vocab, cfg.stop_at_eos)
    if cfg.method == "stateful" and not cfg.beam:
        native, dtype, reason = generation_kernel(model, cfg.num_samples, ctx, cfg.dtype)
        if not args.quiet:              # stdout holds the text alone
            print("generation kernel: %s in %s (%s)" % ("mxgen native op" if native else
                                                        "hybridized per-step loop", dtype,
                                                        reason), file=sys.stderr)
    texts = generate(model, vocab, prompt, length, temperature=cfg.temperature,
                     top_k=cfg.top_k, top_p=cfg.top_p, num_samples=cfg.num_samples,
                     beam=cfg.beam, method=cfg.method, window=cfg.window, seed=cfg.seed,
                     ctx=ctx, stop_at_eos=cfg.stop_at_eos, dtype=cfg.dtype)
    return _print(texts, prompt, length, cfg.stop_at_eos)


def _print(texts, prompt, length, stop_at_eos):
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
