"""Stage P: the sparse model recovers planted features; path, penalty convention, caching."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from engine.stages import SparseModelFit, alpha_max, fit_prediction_stage, fit_sparse_model

# Class k is driven by features PLANTED[k]; the other features are noise.
PLANTED = ((3, 17), (8, 25), (12, 29))


def _planted_data(n_samples: int = 900, seed: int = 0, planted=PLANTED):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_samples, 30)) * rng.uniform(0.5, 3.0, size=30) + 5.0
    standardized = (features - features.mean(axis=0)) / features.std(axis=0)
    scores = np.stack([standardized[:, list(pair)].sum(axis=1) for pair in planted], axis=1)
    return features, np.argmax(scores, axis=1)


@pytest.fixture(scope="module")
def stage_planted_fit():
    features, classes = _planted_data()
    return fit_sparse_model(features, classes, model_predictions=classes)


def test_sparse_model_recovers_planted_features(stage_planted_fit):
    fit = stage_planted_fit

    for k, pair in enumerate(PLANTED):
        assert np.all(fit.coef[k, list(pair)] > 0)
        assert {feature for feature, _ in fit.top_features(k, 2)} == set(pair)
    assert fit.fidelity > 0.9
    assert fit.accuracy == fit.fidelity
    assert fit.n_nonzero == np.count_nonzero(fit.coef)


def test_sparse_model_path_starts_empty_and_grows(stage_planted_fit):
    path = stage_planted_fit.path

    assert path.alphas.shape == (20,)
    assert np.all(np.diff(path.alphas) < 0)
    assert path.n_nonzero[0] == 0
    assert path.n_nonzero[-1] > path.n_nonzero[10] > path.n_nonzero[1] > 0
    # Elastic net may drop a weight now and then; the count still grows overall.
    steps = np.diff(path.n_nonzero)
    assert -steps[steps < 0].sum() <= 2


def test_sparse_model_chooses_sparsest_near_best(stage_planted_fit):
    fit = stage_planted_fit
    path = fit.path

    assert path.fidelity[fit.chosen_index] >= path.fidelity.max() - 0.01
    near_best = path.fidelity >= path.fidelity.max() - 0.01
    assert fit.n_nonzero == path.n_nonzero[near_best].min()


def test_alpha_max_matches_sklearn_penalty_convention():
    """Just above alpha_max every weight is zero; just below it some weight is not."""
    features, classes = _planted_data(400, seed=1)
    standardized = StandardScaler().fit_transform(features)
    n_samples = len(classes)

    for l1_ratio in (0.5, 1.0):
        strongest = alpha_max(standardized, classes, l1_ratio)
        counts = []
        for factor in (1.01, 0.97):
            estimator = LogisticRegression(C=1 / (n_samples * strongest * factor),
                                           l1_ratio=l1_ratio, solver="saga", max_iter=5000,
                                           tol=1e-8)
            counts.append(np.count_nonzero(estimator.fit(standardized, classes).coef_))
        assert counts[0] == 0
        assert counts[1] > 0


def test_top_features_signed_order_and_zero_free():
    features, classes = _planted_data()
    fit = fit_sparse_model(features, classes)

    for k in range(3):
        top = fit.top_features(k, 30)
        weights = [weight for _, weight in top]
        assert weights == sorted(weights, reverse=True)
        assert all(weight != 0 for weight in weights)
        assert len(top) == np.count_nonzero(fit.coef[k])
    with pytest.raises(ValueError, match="out of range"):
        fit.top_features(3)


def test_sparse_model_save_load_round_trip(stage_planted_fit, tmp_path):
    fit = stage_planted_fit
    fit.save(tmp_path / "fit")

    loaded = SparseModelFit.load(tmp_path / "fit")
    features, _ = _planted_data(50, seed=7)

    np.testing.assert_array_equal(loaded.coef, fit.coef)
    np.testing.assert_array_equal(loaded.path.fidelity, fit.path.fidelity)
    np.testing.assert_array_equal(loaded.predict(features), fit.predict(features))
    assert loaded.chosen_index == fit.chosen_index
    assert loaded.top_features(1) == fit.top_features(1)
    assert (loaded.accuracy, loaded.fidelity, loaded.n_nonzero) == (
        fit.accuracy, fit.fidelity, fit.n_nonzero)


def test_sparse_model_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="fit it again"):
        SparseModelFit.load(tmp_path / "absent")


def test_prediction_stage_fits_model_or_ground_truth():
    """The model's predictions follow features 0 and 1, the ground truth 5 and 6."""
    features, predictions = _planted_data(900, seed=2, planted=((0, 1), (2, 3)))
    _, truth = _planted_data(900, seed=2, planted=((5, 6), (7, 9)))

    to_model = fit_prediction_stage(features, predictions, truth)
    to_truth = fit_prediction_stage(features, predictions, truth, fit_to="ground_truth")

    assert to_model.fit_to == "model"
    assert to_truth.fit_to == "ground_truth"
    assert {j for j, _ in to_model.top_features(0, 2)} == {0, 1}
    assert {j for j, _ in to_truth.top_features(0, 2)} == {5, 6}
    assert to_model.fidelity > 0.9
    assert to_truth.accuracy > 0.9
    # The ground-truth fit explains the data, not the model: low fidelity.
    assert to_truth.fidelity < 0.75


def test_sparse_model_binary_rows_are_opposite():
    features, classes = _planted_data(600, seed=3, planted=((0, 1), (2, 3)))

    fit = fit_sparse_model(features, classes)

    np.testing.assert_allclose(fit.coef[0], -fit.coef[1])
    assert {j for j, _ in fit.top_features(0, 2)} == {0, 1}


def test_sparse_model_unfitted_class_is_never_predicted():
    features, classes = _planted_data(600, seed=4)

    fit = fit_sparse_model(features, classes, n_classes=5)

    assert fit.coef.shape == (5, 30)
    assert fit.top_features(4) == []
    assert set(np.unique(fit.predict(features))) <= {0, 1, 2}


def test_sparse_model_rejects_invalid_inputs():
    features, classes = _planted_data(100)
    with pytest.raises(ValueError, match="shape"):
        fit_sparse_model(features, classes[:-1])
    with pytest.raises(ValueError, match="l1_ratio"):
        fit_sparse_model(features, classes, l1_ratio=0.0)
    with pytest.raises(ValueError, match="two classes"):
        fit_sparse_model(features, np.zeros(100, dtype=int))
    with pytest.raises(ValueError, match="fit_to"):
        fit_prediction_stage(features, classes, classes, fit_to="labels")
