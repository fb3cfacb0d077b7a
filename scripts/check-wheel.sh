#!/usr/bin/env bash
# Builds mxgen's sdist and wheel (python -m build, native kernels required),
# installs the wheel -- not the checkout -- in a fresh virtual environment
# and runs from it what README command 1 runs: a training dry run on the
# embedded corpus, generation from its checkpoint and every case of
# `mxgen bench --quick` (the test suite runs only a few of them).
# Then, if an interpreter outside the supported range is on PATH
# (python3.12), checks that pip refuses the wheel there with its own message.
#
#   bash scripts/check-wheel.sh            # with python3
#   PYTHON=python3.9 bash scripts/check-wheel.sh
#
# Everything it makes lives in one new temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/mxgen-wheel-XXXXXX")
trap 'rm -rf "$work"' EXIT

"$PY" -m venv "$work/build-env"
"$work/build-env/bin/pip" install -q build
MXGEN_REQUIRE_KERNELS=1 "$work/build-env/bin/python" -m build --sdist --wheel --outdir "$work/dist" . \
    > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/mxgen-*.whl)
echo "built: $(cd "$work/dist" && ls | tr '\n' ' ')"
unzip -Z1 "$wheel" | grep 'mxgen/libmxgen_kernels.*\.so$' > /dev/null || {
    echo "the wheel holds no native library" >&2; exit 1; }

"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
bin="$work/venv/bin"
cd "$work"                          # away from the checkout: only the installed package
"$bin/mxgen" --version
"$bin/python" -c "import mxgen, os, sys; from mxgen import _native
assert not mxgen.__file__.startswith('$OLDPWD'), mxgen.__file__
assert _native.available(), _native.status()
print('installed at', os.path.dirname(mxgen.__file__), '| kernels:', _native.isa())"
"$bin/mxgen" train-text --data stdlib --dry-run --out "$work/run"
"$bin/mxgen" generate --checkpoint "$work/run" --length 60 --seed 1
# every case of the quick benchmark mode, from the wheel: each reports its
# throughput with a ratio to its baseline (the test suite runs only a few)
"$bin/mxgen" bench --quick --json "$work/bench.json"
"$bin/python" - "$work/bench.json" <<'PY'
import json, sys
from mxgen import _native
data = json.load(open(sys.argv[1]))
names = {b["name"] for b in data["benchmarks"]}
wanted = {"test_train_step[lstm]", "test_train_step[gru]", "test_unrolled_step",
          "test_generate_batch1", "test_generate_batch64", "test_bptt_batches",
          "test_bucket_iterator", "test_dcgan_iteration", "test_gemm_peak"}
if _native.available():
    wanted |= {"test_sampler_op[1]", "test_sampler_op[64]"}
missing = wanted - names
assert not missing, "quick benchmark cases missing: %s" % sorted(missing)
for bench in data["benchmarks"]:
    info = bench["extra_info"]
    assert info["native_isa"] and info["device"], bench["name"]
    if bench["name"] == "test_gemm_peak":      # the run's peak, no baseline
        assert info["peak"] > 0, info
    else:
        assert info["candidate_per_s"] > 0, bench["name"]
        assert any(k.startswith("ratio_vs_") for k in info), bench["name"]
print("quick benchmarks: %d cases, each with its ratio" % len(names))
PY

# an interpreter above the range: $OUTSIDE_PYTHON, else python3.12/3.13 on
# PATH, else one that pyenv holds
outside=${OUTSIDE_PYTHON:-}
if [ -z "$outside" ]; then
    for c in python3.12 python3.13; do
        if "$c" -c "import sys; assert sys.version_info >= (3, 12)" 2>/dev/null; then
            outside=$c; break
        fi
    done
fi
if [ -z "$outside" ] && command -v pyenv > /dev/null; then
    v=$(pyenv versions --bare | grep -E '^3\.1[2-9]' | head -1 || true)
    [ -n "$v" ] && outside="$(pyenv root)/versions/$v/bin/python"
fi
if [ -n "$outside" ] && "$outside" -c "import pip" 2>/dev/null; then
    "$outside" -m venv "$work/venv312"
    # a current pip: 23.x, bundled with 3.12.1, resolves the dependencies
    # (and tries to build numpy) before it checks Requires-Python
    "$work/venv312/bin/pip" install -q --upgrade pip
    if "$work/venv312/bin/pip" install -q "$wheel" > "$work/pip312.log" 2>&1; then
        echo "pip installed mxgen on $("$outside" --version)" >&2; exit 1
    fi
    grep -q "requires a different Python" "$work/pip312.log" || {
        cat "$work/pip312.log" >&2; exit 1; }
    grep "requires a different Python" "$work/pip312.log"
else
    echo "no interpreter above the supported range found: the refusal was not checked"
fi
echo "wheel check passed"
