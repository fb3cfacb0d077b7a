import numpy as np
import pytest

from mxgen.errors import MXGenError
from mxgen.models.gaussian import HUMANS, MARTIANS, GaussianClassModel, default_heights


def test_statistics_match_their_definitions():
    stats = GaussianClassModel().fit(default_heights()).stats()
    for name, values in (("martian", MARTIANS), ("human", HUMANS)):
        assert stats[name]["mean"] == pytest.approx(np.mean(values))
        assert stats[name]["std"] == pytest.approx(np.std(values, ddof=0))
        assert stats[name]["std_unbiased"] == pytest.approx(np.std(values, ddof=1))
    assert stats["martian"]["mean"] == pytest.approx(274.0)
    assert stats["human"]["std"] == pytest.approx(21.960191, abs=1e-5)


def test_classify_by_likelihood():
    model = GaussianClassModel().fit(default_heights())
    assert model.classify([150, 180, 230, 300]) == ["human", "human", "martian", "martian"]
    # the decision boundary, found independently with numpy, lies between the means
    def logpdf(x, values):
        m, sd = np.mean(values), np.std(values)
        return -0.5 * ((x - m) / sd) ** 2 - np.log(sd)
    grid = np.linspace(175, 274, 100001)
    boundary = grid[np.argmin(np.abs(logpdf(grid, MARTIANS) - logpdf(grid, HUMANS)))]
    assert model.classify([boundary - 0.5])[0] == "human"
    assert model.classify([boundary + 0.5])[0] == "martian"


def test_sampling_is_reproducible_and_fits():
    model = GaussianClassModel().fit(default_heights())
    a = model.sample("martian", 20000, seed=7)
    assert np.array_equal(a, model.sample("martian", 20000, seed=7))
    assert a.mean() == pytest.approx(274.0, abs=1.0)
    assert a.std() == pytest.approx(np.std(MARTIANS), rel=0.03)


def test_interbred_mixture_is_bimodal():
    model = GaussianClassModel().fit(default_heights())
    x = model.sample_interbred(20000, seed=1)
    assert x.mean() == pytest.approx((274.0 + 174.5) / 2, abs=1.5)
    labels = model.classify(x)
    share = labels.count("martian") / len(labels)
    assert 0.4 < share < 0.6


def test_bad_inputs():
    with pytest.raises(MXGenError, match="at least 2"):
        GaussianClassModel().fit({"x": [1.0]})
    with pytest.raises(MXGenError, match="unknown class"):
        GaussianClassModel().fit(default_heights()).sample("venusian", 3)
