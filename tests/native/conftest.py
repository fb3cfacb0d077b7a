"""Fixtures for the native-kernel tests: skipped, with the reason, when the
library is not built (CI builds it through ``pip install -e .``), and run
under every kernel path this CPU supports (``isa``)."""
import pytest

from mxgen import _native
from mxgen.data.vocab import Vocab

# Text for vocabularies and prompts, written for these tests.
TEXT = ("Supposing that the kernels are fast, what then? Is there not ground, Then, for "
        "suspecting that every CPU, old or new, wants its own path -- AVX-512, AVX2, or "
        "none at all; and that a benchmark measured on one machine says little about "
        "another (1, 2, 3...)!\n")

SUPPORTED = _native.supported_isas() if _native.available() else ()


def pytest_collection_modifyitems(config, items):
    if _native.available():
        return
    skip = pytest.mark.skip(reason="native kernels unavailable: %s" % (_native.status()[2],))
    for item in items:
        if "/native/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(params=SUPPORTED or ["none"])
def isa(request):
    """Runs the test with the kernels switched to each path the CPU supports."""
    if request.param == "none":
        pytest.skip("native kernels unavailable: %s" % (_native.status()[2],))
    previous = _native.set_isa(request.param)
    yield request.param
    _native.set_isa(previous)


@pytest.fixture(scope="session")
def vocab():
    return Vocab.from_text(TEXT)
