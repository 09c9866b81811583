"""The estimators take scikit-learn's calls: ``fit(X, y)`` ignores ``y``, weights are
``sample_weight=``, both have ``fit_predict``, and a parameter given as text is refused
with kpal's message instead of a TypeError from deep inside."""

from __future__ import annotations

import numpy as np
import pytest

from kpal import GaussianMixture, KMeans
from kpal.errors import OptionError


def _two_blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(10, 1, (100, 2))])
    y = np.repeat([0.0, 1.0], 100)  # labels: as weights they would drop the first blob
    return X, y


@pytest.mark.parametrize("cls", [KMeans, GaussianMixture])
def test_fit_with_labels_ignores_them(cls):
    X, y = _two_blobs()
    plain = cls(2, seed=0).fit(X)
    with_y = cls(2, seed=0).fit(X, y)
    centres = "cluster_centers_" if cls is KMeans else "means_"
    np.testing.assert_array_equal(getattr(with_y, centres), getattr(plain, centres))
    assert sorted(np.bincount(cls(2, seed=0).fit_predict(X, y)).tolist()) == [100, 100]
    assert np.sort(getattr(with_y, centres)[:, 0]) == pytest.approx([0, 10], abs=0.3)


@pytest.mark.parametrize("cls", [KMeans, GaussianMixture])
def test_weights_are_sample_weight(cls):
    X, y = _two_blobs()
    weighted = cls(2, seed=0).fit(X, sample_weight=y + 1)
    repeated = cls(2, seed=0).fit(np.concatenate([X, X[100:]]))
    centres = "cluster_centers_" if cls is KMeans else "means_"
    np.testing.assert_allclose(np.sort(getattr(weighted, centres), axis=0),
                               np.sort(getattr(repeated, centres), axis=0), rtol=1e-6)


def test_mixture_fit_predict_is_fit_then_predict():
    X, _ = _two_blobs()
    labels = GaussianMixture(2, seed=3).fit_predict(X)
    np.testing.assert_array_equal(labels, GaussianMixture(2, seed=3).fit(X).predict(X))


def test_mixture_score_ignores_y():
    X, y = _two_blobs()
    gm = GaussianMixture(2, seed=0).fit(X)
    assert gm.score(X, y) == gm.score(X)
    assert gm.score(X, sample_weight=y + 1) != gm.score(X)


@pytest.mark.parametrize("cls", [KMeans, GaussianMixture])
@pytest.mark.parametrize("name, value", [("k", "3"), ("seed", "1"), ("max_iter", "5"),
                                         ("tol", "0.1")])
def test_a_parameter_given_as_text_is_refused(cls, name, value):
    X, _ = _two_blobs()
    params = {"k": 3, name: value}
    with pytest.raises(OptionError, match=f"^{name}='{value}' must be a number, not a string$"):
        cls(**params).fit(X)


def test_help_lists_the_names_imported_on_first_use():
    import pydoc

    import kpal

    text = pydoc.render_doc(kpal, renderer=pydoc.plaintext)
    for name in ("GaussianMixture", "choose_k", "fit_palette", "load_palette", "save_palette",
                 "QualityError"):
        assert name in dir(kpal) and (f"class {name}" in text or f"{name}(" in text)
