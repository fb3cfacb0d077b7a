"""The kill test (tests/kill_resume.py) in a 3-kill version per family."""
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__))))
from kill_resume import REPO, kill_and_resume  # noqa: E402


@pytest.mark.parametrize("family", ["text", "gan"])
def test_sigkilled_runs_resume_bit_exactly(family, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    counts = kill_and_resume(family, 3, str(tmp_path), random.Random(1), env, log=lambda *_: None)
    assert counts["kills"] == 3
    assert counts["unreadable"] == 0
    assert counts["identical"], counts
