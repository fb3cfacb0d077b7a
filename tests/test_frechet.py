import numpy as np

from mxgen.utils.frechet import frechet_distance, frechet_features


def _reference(a, b):
    """Textbook formula with an explicit matrix square root (eigendecomposition
    of the non-symmetric product)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eig(ca @ cb)
    sqrt = (vecs * np.sqrt(vals.astype(complex))) @ np.linalg.inv(vecs)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * sqrt.real))


def test_matches_the_textbook_formula():
    rng = np.random.RandomState(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(500, 6)) * 2 + 1
    assert abs(frechet_distance(a, b) - _reference(a, b)) < 1e-6 * _reference(a, b)
    assert abs(frechet_distance(a, a)) < 1e-6
    # a pure shift adds exactly its squared length
    assert abs(frechet_distance(a, a + 3.0) - 9.0 * 6) < 1e-6


def test_fallback_feature_net_is_fixed_and_named():
    net = frechet_features(3)
    assert net.name == "random_conv_v1"
    x = np.random.RandomState(1).uniform(-1, 1, size=(8, 3, 32, 32)).astype(np.float32)
    f1 = net.features(x)
    assert f1.shape == (8, 512)
    np.testing.assert_array_equal(f1, frechet_features(3).features(x))   # same weights every time
