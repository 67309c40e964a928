"""explain_item: every stage for one item, for a second kind of wrapper and the built-in model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stage_toy_models import SeriesModel, series_datapoints

from engine.explain import ExplainConfig, ItemExplanation, explain_item
from engine.stages import (
    Target,
    class_target,
    feature_target,
    fit_sparse_model,
    global_representation,
    gradient_importance,
    local_representation,
    pool_features,
    second_order_gradient,
    second_order_gradient_loop,
)


def _predictions(model, datapoints) -> np.ndarray:
    with torch.no_grad():
        return model.forward(model.encode(datapoints)).logits.argmax(dim=1).numpy()


@pytest.fixture(scope="module")
def stage_series_setup():
    """SeriesModel, a pool of 80 datapoints, its features and a sparse fit to its predictions."""
    model = SeriesModel()
    pool = series_datapoints(80, seed=10)
    activations = pool_features(model, pool, batch_size=32)
    predictions = _predictions(model, pool)
    fit = fit_sparse_model(activations, predictions, model_predictions=predictions, n_classes=3)
    return model, pool, activations, fit


def _assert_plain_tree(value, path="explanation") -> None:
    """Walk dataclasses, dicts and lists; every leaf must be NumPy or a Python scalar."""
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            _assert_plain_tree(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int, type(None))), f"{path} has key {key!r}"
            _assert_plain_tree(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _assert_plain_tree(item, f"{path}[{position}]")
    else:
        assert isinstance(value, (np.ndarray, np.generic, int, float, str, bool, type(None))), (
            f"{path} is a {type(value).__name__}")


def test_series_model_gradient_and_interaction():
    model = SeriesModel()
    datapoint = series_datapoints(1, seed=5)[0]

    scores = gradient_importance(model, datapoint, feature_target(1))
    batched = second_order_gradient(model, datapoint, class_target(2), source="series",
                                    destination="static")
    loop = second_order_gradient_loop(model, datapoint, class_target(2), source="series",
                                      destination="static")

    assert scores["series"].shape == (12,)
    assert scores["static"].shape == (3,)
    assert batched.shape == (12, 3)
    assert np.abs(batched).max() > 1e-3
    np.testing.assert_allclose(batched, loop, rtol=1e-10, atol=1e-14)


def test_explain_item_series_model(stage_series_setup):
    model, pool, activations, fit = stage_series_setup
    datapoint = series_datapoints(1, seed=99)[0]
    config = ExplainConfig(top_tokens=2, top_features=3, rg_k=2)
    steps = []

    result = explain_item(model, datapoint, sparse_fit=fit, pool_datapoints=pool,
                          pool_activations=activations, config=config,
                          progress=lambda step, total, message: steps.append((step, total)))

    predicted = int(_predictions(model, [datapoint])[0])
    assert isinstance(result, ItemExplanation)
    assert result.predicted_class == result.target_class == predicted
    _assert_plain_tree(result)

    # U for the predicted class; no LIME for vector modalities.
    expected = gradient_importance(model, datapoint, class_target(predicted))
    for name in ("series", "static"):
        np.testing.assert_allclose(result.gradient[name], expected[name], rtol=1e-12)
    assert result.lime == {}

    # C for both ordered pairs, from the top two atoms of each source.
    assert [(c.source, c.destination) for c in result.interactions] == [
        ("series", "static"), ("static", "series")]
    for interaction in result.interactions:
        order = np.argsort(-np.abs(expected[interaction.source]), kind="stable")[:2]
        assert interaction.source_atoms == order.tolist()
        np.testing.assert_allclose(interaction.scores, second_order_gradient(
            model, datapoint, class_target(predicted), source=interaction.source,
            destination=interaction.destination, source_atoms=interaction.source_atoms),
            rtol=1e-12)

    # P: z_top of the predicted class, with contributions weight x standardized value.
    z_top = fit.top_features(predicted, 3)
    assert result.prediction.features == [j for j, _ in z_top]
    standardized = fit.standardize(result.activations[None, :])[0]
    np.testing.assert_allclose(result.prediction.contributions,
                               [w * standardized[j] for j, w in z_top], rtol=1e-12)

    # R_l and R_g for every feature of z_top.
    assert [f.feature for f in result.features] == [j for j, _ in z_top]
    for feature in result.features:
        j = feature.feature
        local = gradient_importance(model, datapoint, feature_target(j))
        np.testing.assert_allclose(feature.local.gradient["series"], local["series"], rtol=1e-12)
        top, bottom = global_representation(activations, j, 2)
        assert [e.index for e in feature.top] == top.tolist()
        assert [e.index for e in feature.bottom] == bottom.tolist()
        for example in feature.top + feature.bottom:
            assert example.activation == pytest.approx(activations[example.index, j])
            pool_scores = gradient_importance(model, pool[example.index], feature_target(j))
            np.testing.assert_allclose(example.gradient["static"], pool_scores["static"],
                                       rtol=1e-10, atol=1e-14)

    assert steps[-1][0] == steps[-1][1]
    assert [step for step, _ in steps] == sorted(step for step, _ in steps)


def test_local_representation_matches_explain_item(stage_series_setup):
    model, pool, activations, fit = stage_series_setup
    datapoint = series_datapoints(1, seed=99)[0]
    result = explain_item(model, datapoint, sparse_fit=fit, pool_datapoints=pool,
                          pool_activations=activations, config=ExplainConfig(top_tokens=2))
    feature = result.features[0]

    local = local_representation(model, datapoint, feature.feature, top_tokens=2)

    assert local.activation == pytest.approx(result.activations[feature.feature])
    np.testing.assert_allclose(local.gradient["series"], feature.local.gradient["series"])
    assert len(local.interactions) == len(feature.local.interactions) == 2
    for mine, theirs in zip(local.interactions, feature.local.interactions, strict=True):
        assert mine.source_atoms == theirs.source_atoms
        np.testing.assert_allclose(mine.scores, theirs.scores)


def test_pool_features_match_forward():
    model = SeriesModel()
    pool = series_datapoints(7, seed=3)

    features = pool_features(model, pool, batch_size=3)

    with torch.no_grad():
        expected = model.forward(model.encode(pool)).features.numpy()
    assert features.shape == (7, 4)
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_explain_item_target_class_override(stage_series_setup):
    model, pool, activations, fit = stage_series_setup
    datapoint = series_datapoints(1, seed=99)[0]
    other = (int(_predictions(model, [datapoint])[0]) + 1) % 3

    result = explain_item(model, datapoint, sparse_fit=fit, pool_datapoints=pool,
                          pool_activations=activations, target_class=other,
                          config=ExplainConfig(top_features=2))

    assert result.target_class == other != result.predicted_class
    assert result.prediction.class_index == other
    assert [f.feature for f in result.features] == [j for j, _ in fit.top_features(other, 2)]


def test_explain_item_rejects_invalid_inputs(stage_series_setup):
    model, pool, activations, fit = stage_series_setup
    with pytest.raises(ValueError, match="one row per pool datapoint"):
        explain_item(model, pool[0], sparse_fit=fit, pool_datapoints=pool[:10],
                     pool_activations=activations)
    with pytest.raises(ValueError, match="top_features"):
        ExplainConfig(top_features=-1)
    with pytest.raises(ValueError, match="lime_samples"):
        ExplainConfig(lime_samples=1)
    with pytest.raises(ValueError, match="no value for modality static"):
        explain_item(model, {"series": pool[0]["series"]}, sparse_fit=fit,
                     pool_datapoints=pool, pool_activations=activations)


def test_global_representation_ties_and_order():
    activations = np.array([[0.5, 1.0], [2.0, 1.0], [0.5, 3.0], [-1.0, 1.0]])

    top, bottom = global_representation(activations, 0, k=3)
    top_tied, bottom_tied = global_representation(activations, 1, k=2)

    assert top.tolist() == [1, 0, 2]
    assert bottom.tolist() == [3, 0, 2]
    assert top_tied.tolist() == [2, 0]
    assert bottom_tied.tolist() == [0, 1]
    with pytest.raises(ValueError, match="out of range"):
        global_representation(activations, 2)


def test_explain_item_easyvqa():
    from engine.datasets.easyvqa import EasyVQA
    from engine.models.easyvqa_net import load_easyvqa_model

    model, test = load_easyvqa_model(), EasyVQA("test")
    pool = [test.datapoint(i) for i in range(100, 260)]
    activations = pool_features(model, pool, batch_size=64)
    predictions = _predictions(model, pool)
    fit = fit_sparse_model(activations, predictions, model_predictions=predictions,
                           n_classes=len(model.label_names), n_alphas=6, alpha_min_ratio=0.1)
    datapoint = test.datapoint(0)
    tokens = model.encode([datapoint]).atoms["question"][0]
    config = ExplainConfig(lime_samples=60, top_features=2, rg_k=2)

    result = explain_item(model, datapoint, sparse_fit=fit, pool_datapoints=pool,
                          pool_activations=activations, config=config,
                          target_class=int(predictions[0]))

    _assert_plain_tree(result)
    assert result.atoms == {"question": tokens}
    assert result.gradient["image"].shape == (64, 64)
    assert result.lime["image"].scores.shape == (64, 64)
    assert result.lime["question"].scores.shape == (len(tokens),)
    assert result.lime["question"].target == Target("class", result.target_class)
    pairs = {(c.source, c.destination): c for c in result.interactions}
    assert pairs[("question", "image")].scores.shape == (3, 64, 64)
    assert pairs[("image", "question")].scores.shape == (64, len(tokens))
    assert len(result.features) <= 2
    for feature in result.features:
        assert feature.local.lime["image"].target == feature_target(feature.feature)
        assert feature.local.interactions[0].scores.shape == (3, 64, 64)
        assert len(feature.top) == len(feature.bottom) == 2
        assert feature.top[0].gradient["image"].shape == (64, 64)
