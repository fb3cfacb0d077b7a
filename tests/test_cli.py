"""Every command runs end to end in a subprocess; bad input gives one clear line."""
import os

import pytest

from mxgen.cli import COMMANDS


def _assert_clean_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("mxgen: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


def test_info(cli):
    proc = cli("info")
    assert proc.returncode == 0, proc.stderr
    for key in ("mxnet", "1.9.1", "OMP_NUM_THREADS", "gpus", "mxnet features", "native ops"):
        assert key in proc.stdout


def test_train_and_generate_dry_run(cli, tmp_path, nietzsche_path):
    out = tmp_path / "run"
    proc = cli("train-text", "--data", nietzsche_path, "--dry-run", "--out", out,
               "--num-hidden", 32, "--num-embed", 16, "--seq-len", 20, "--batch-size", 8,
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint:" in proc.stdout and "--- sample" in proc.stdout
    assert os.path.isfile(out / "latest") and os.path.isfile(out / "metrics.jsonl")
    gen = cli("generate", "--checkpoint", out, "--prompt", "The ", "--length", 30,
              "--seed", 1, "--num-samples", 2, "--top-k", 5)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.count("The ") >= 2
    again = cli("generate", "--checkpoint", out, "--prompt", "The ", "--length", 30,
                "--seed", 1, "--num-samples", 2, "--top-k", 5)
    assert again.stdout == gen.stdout                       # reproducible under a seed
    beam = cli("generate", "--checkpoint", out, "--prompt", "The", "--beam", 3, "--dry-run")
    assert beam.returncode == 0, beam.stderr
    # bad prompt
    bad = cli("generate", "--checkpoint", out, "--prompt", "\u2603 snow")
    _assert_clean_error(bad, "not in the vocabulary", "'\u2603'")
    # a dry run of a resume continues from the run's checkpoint, but writes
    # elsewhere: the run itself is left exactly as it was
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    resumed = cli("train-text", "--out", out, "--resume", "--dry-run", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "dry run: writing to" in resumed.stdout
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_default_corpus_dry_run(cli, tmp_path):
    proc = cli("train-text", "--dry-run", "--out", tmp_path / "std", "--no-progress",
               "--num-hidden", 32, "--seq-len", 20, "--batch-size", 8)
    assert proc.returncode == 0, proc.stderr
    assert "corpus stdlib" in proc.stdout


def test_samples_dry_run_and_whole_samples(cli, tmp_path):
    """The embedded list corpus trains with --samples; generation returns
    whole samples, one a line."""
    out = tmp_path / "names"
    proc = cli("train-text", "--data", "stdlib-names", "--samples", "lines", "--dry-run",
               "--out", out, "--num-hidden", 32, "--num-embed", 16, "--batch-size", 8,
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "samples stdlib-names (lines)" in proc.stdout and "buckets (length x samples" in proc.stdout
    assert "--- ten samples" in proc.stdout
    gen = cli("generate", "--checkpoint", out, "--stop-at-eos", "--num-samples", 5,
              "--length", 30, "--seed", 2)
    assert gen.returncode == 0, gen.stderr
    assert len(gen.stdout.splitlines()) == 5
    assert "samples ended by themselves" in gen.stderr


def test_generate_bad_checkpoints(cli, tmp_path, nietzsche_path):
    _assert_clean_error(cli("generate", "--checkpoint", tmp_path / "missing"),
                        "checkpoint not found")
    (tmp_path / "empty").mkdir()
    _assert_clean_error(cli("generate", "--checkpoint", tmp_path / "empty"),
                        "is not a checkpoint")
    out = tmp_path / "run"
    assert cli("train-text", "--data", nietzsche_path, "--dry-run", "--out", out,
               "--num-hidden", 16, "--seq-len", 10, "--batch-size", 4,
               "--no-progress").returncode == 0
    ckpt = out / "checkpoints" / sorted(os.listdir(out / "checkpoints"))[-1]
    (ckpt / "vocab.json").write_text('{"chars": ["a", "b"]}')     # a different vocabulary
    _assert_clean_error(cli("generate", "--checkpoint", out), "vocab.json is truncated or altered")
    (ckpt / "vocab.json").unlink()
    _assert_clean_error(cli("generate", "--checkpoint", out), "missing vocab.json")


def test_train_and_sample_gan_dry_run(cli, tmp_path):
    out = tmp_path / "gan"
    proc = cli("train-gan", "--dry-run", "--out", out, "--no-progress", "--image-size", 32,
               "--ngf", 8, "--ndf", 8)
    assert proc.returncode == 0, proc.stderr
    assert "Frechet distance" in proc.stdout and "random_conv_v1" in proc.stdout
    grid = tmp_path / "grid.png"
    one = cli("sample-gan", "--checkpoint", out, "--num", 9, "--grid", grid, "--seed", 4)
    assert one.returncode == 0, one.stderr
    first = grid.read_bytes()
    _assert_clean_error(cli("sample-gan", "--checkpoint", out, "--num", 9, "--grid", grid,
                            "--seed", 5), "exists; pass --force")
    assert grid.read_bytes() == first                        # not replaced unasked
    assert cli("sample-gan", "--checkpoint", out, "--num", 9, "--grid", grid,
               "--seed", 4, "--force").returncode == 0
    assert grid.read_bytes() == first                        # reproducible under a seed
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]     # no temporary file left
    singles = cli("sample-gan", "--checkpoint", out, "--num", 3, "--out-dir", tmp_path / "s")
    assert singles.returncode == 0 and len(os.listdir(tmp_path / "s")) == 3
    strip = tmp_path / "walk.png"
    walk = cli("sample-gan", "--checkpoint", out, "--interpolate", "--steps", 5, "--grid", strip)
    assert walk.returncode == 0, walk.stderr
    assert strip.exists() and (tmp_path / "walk.gif").exists()


def test_export_then_generate_and_sample_from_the_exports(cli, tmp_path, nietzsche_path):
    text, gan = tmp_path / "text", tmp_path / "gan"
    assert cli("train-text", "--data", nietzsche_path, "--dry-run", "--out", text,
               "--num-hidden", 16, "--num-embed", 8, "--seq-len", 10, "--batch-size", 4,
               "--no-progress").returncode == 0
    assert cli("train-gan", "--dry-run", "--out", gan, "--no-progress", "--image-size", 32,
               "--ngf", 8, "--ndf", 8).returncode == 0
    for run, out in ((text, tmp_path / "text-exp"), (gan, tmp_path / "gan-exp")):
        proc = cli("export", "--checkpoint", run, "--out", out)
        assert proc.returncode == 0, proc.stderr
        assert "exported" in proc.stdout and os.path.isfile(out / "export.json")
    from_export = cli("generate", "--exported", tmp_path / "text-exp", "--prompt", "The ",
                      "--length", 30, "--temperature", 0)
    from_ckpt = cli("generate", "--checkpoint", text, "--prompt", "The ", "--length", 30,
                    "--temperature", 0)
    assert from_export.returncode == 0, from_export.stderr
    assert from_export.stdout == from_ckpt.stdout               # greedy: the same text
    grid_a, grid_b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli("sample-gan", "--exported", tmp_path / "gan-exp", "--num", 4, "--grid", grid_a,
               "--seed", 2).returncode == 0
    assert cli("sample-gan", "--checkpoint", gan, "--num", 4, "--grid", grid_b,
               "--seed", 2).returncode == 0
    assert grid_a.read_bytes() == grid_b.read_bytes()


def test_stylize_and_train_style_dry_run(cli, tmp_path, emoji_sample_dir):
    content = os.path.join(emoji_sample_dir, "emoji_u0030.png")
    style = os.path.join(emoji_sample_dir, "emoji_u002a.png")
    out = tmp_path / "out.png"
    proc = cli("stylize", "--content", content, "--style", style, "--out", out, "--dry-run",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "random_multiscale_v1" in proc.stderr and "before" in proc.stdout
    for path in (out, tmp_path / "out-side.png", tmp_path / "out.metrics.jsonl"):
        assert os.path.isfile(path), path
    run = tmp_path / "style-run"
    train = cli("train-style", "--content-dir", emoji_sample_dir, "--style", style, "--out", run,
                "--dry-run", "--no-progress", "--width", 8, "--residual", 1, "--decode-workers", 0)
    assert train.returncode == 0, train.stderr
    assert "checkpoint:" in train.stdout and "sample:" in train.stdout
    net_out = tmp_path / "net.png"
    by_net = cli("stylize", "--method", "net", "--model", run, "--content", content,
                 "--out", net_out, "--size", 64)
    assert by_net.returncode == 0, by_net.stderr
    assert os.path.isfile(net_out) and os.path.isfile(tmp_path / "net-side.png")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_its_flags_from_its_config(command):
    """Each command's flags are generated from its config dataclass(es): every
    field has a flag, and --help shows the default the dataclass really has
    (or that the flag is required); --quiet and --verbose come with all."""
    import dataclasses
    import importlib
    import typing

    from mxgen.cli import _build_parser
    from mxgen.cli.common import OutputConfig
    module = importlib.import_module("mxgen.cli." + COMMANDS[command])
    configs = module.CONFIG if isinstance(module.CONFIG, tuple) else (module.CONFIG,)
    parser = _build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices
               and command in a.choices).choices[command]
    actions = {a.dest: a for a in sub._actions}
    for config_cls in configs + (OutputConfig,):
        for f in dataclasses.fields(config_cls):
            assert f.name in actions, "%s has no flag for %s" % (command, f.name)
            action = actions[f.name]
            assert action.help, f.name
            base = [t for t in typing.get_args(f.type) if t is not type(None)] or [f.type]
            if base[0] is bool or f.metadata.get("positional"):
                continue
            if f.metadata.get("required"):
                assert action.required or f.metadata.get("exclusive"), f.name
            else:
                shown = "none" if f.default is None else str(f.default)
                # the real default, or the help's own words for an unset one
                # ("(default: the recipe's)", "(0: none; default: the recipe's)")
                assert "(default: %s)" % shown in action.help or (
                    f.default is None and "default: " in f.metadata["help"]), \
                    (f.name, action.help)
            assert action.help.count("default:") <= 1, (f.name, action.help)
    help_text = sub.format_help()
    assert "--quiet" in help_text and "--verbose" in help_text
