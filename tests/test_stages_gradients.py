"""Stage U by first-order gradient: finite differences, batching, the text reduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stage_toy_models import SeriesModel, ToyImageTextModel, series_datapoints, toy_image_datapoint

from engine.stages import (
    Target,
    class_target,
    feature_target,
    gradient_importance,
    gradient_importance_batch,
)


@pytest.fixture(scope="module")
def stage_easyvqa():
    """The built-in model and one easy-VQA test datapoint."""
    from engine.datasets.easyvqa import EasyVQA
    from engine.models.easyvqa_net import load_easyvqa_model

    return load_easyvqa_model(), EasyVQA("test").datapoint(0)


def _target_value(model, batch, target) -> float:
    with torch.no_grad():
        return float(target.select(model.forward(batch))[0])


@pytest.mark.parametrize("target", [class_target(1), feature_target(4)])
def test_gradient_image_matches_finite_differences(target):
    model, datapoint = ToyImageTextModel(), toy_image_datapoint()
    scores = gradient_importance(model, datapoint, target)["image"]

    step = 1e-5
    expected = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            # The image score is the derivative along brightening all channels of a pixel.
            values = []
            for sign in (1, -1):
                image = datapoint["image"].copy()
                image[i, j, :] += sign * step
                values.append(_target_value(model, model.encode([{**datapoint, "image": image}]),
                                            target))
            expected[i, j] = (values[0] - values[1]) / (2 * step)

    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-9)


def test_gradient_text_matches_finite_differences():
    model, datapoint = ToyImageTextModel(), toy_image_datapoint()
    target = class_target(2)
    scores = gradient_importance(model, datapoint, target)["question"]

    batch = model.encode([datapoint])
    positions = batch.atom_positions["question"][0]
    step = 1e-5
    expected = []
    for position in positions:
        # Gradient x input is the derivative along scaling the token's own embedding.
        values = []
        for sign in (1, -1):
            embeddings = batch.inputs["question"].clone()
            embeddings[0, position] *= 1 + sign * step
            values.append(_target_value(
                model, batch.with_inputs({**batch.inputs, "question": embeddings}), target))
        expected.append((values[0] - values[1]) / (2 * step))

    assert scores.shape == (len(positions),) == (6,)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-9)


def test_gradient_vector_matches_finite_differences():
    model, datapoint = SeriesModel(), series_datapoints(1, seed=3)[0]
    target = class_target(0)
    scores = gradient_importance(model, datapoint, target)

    step = 1e-6
    for name, size in (("series", 12), ("static", 3)):
        expected = []
        for atom in range(size):
            values = []
            for sign in (1, -1):
                changed = datapoint[name].copy()
                changed[atom] += sign * step
                values.append(_target_value(model, model.encode([{**datapoint, name: changed}]),
                                            target))
            expected.append((values[0] - values[1]) / (2 * step))
        np.testing.assert_allclose(scores[name], expected, rtol=1e-6, atol=1e-9)


def test_gradient_batch_equals_single():
    model = ToyImageTextModel()
    # Questions of different lengths, so the batch is padded.
    datapoints = [toy_image_datapoint(0, "what color is the shape ?"),
                  toy_image_datapoint(1, "is the circle red"),
                  toy_image_datapoint(2, "shape ?")]
    targets = [class_target(0), feature_target(3), class_target(3)]

    batched = gradient_importance_batch(model, datapoints, targets, batch_size=2)

    for datapoint, target, result in zip(datapoints, targets, batched, strict=True):
        single = gradient_importance(model, datapoint, target)
        assert result["question"].shape == (len(datapoint["question"].split()),)
        for name in ("image", "question"):
            np.testing.assert_allclose(result[name], single[name], rtol=1e-10, atol=1e-14)


def test_gradient_rejects_unknown_target():
    model = ToyImageTextModel()
    with pytest.raises(ValueError, match="out of range"):
        gradient_importance(model, toy_image_datapoint(), class_target(4))
    with pytest.raises(ValueError, match="out of range"):
        gradient_importance(model, toy_image_datapoint(), feature_target(6))


def test_target_rejects_invalid_values():
    with pytest.raises(ValueError, match="kind"):
        Target("logit", 0)
    with pytest.raises(ValueError, match="non-negative"):
        Target("class", -1)
    with pytest.raises(ValueError, match="non-negative"):
        Target("feature", 1.5)
    assert class_target(np.int64(3)) == Target("class", 3)


def test_gradient_easyvqa_shapes(stage_easyvqa):
    model, datapoint = stage_easyvqa
    tokens = model.encode([datapoint]).atoms["question"][0]

    for target in (class_target(0), feature_target(7)):
        scores = gradient_importance(model, datapoint, target)
        assert scores["image"].shape == (64, 64)
        assert scores["question"].shape == (len(tokens),)
        assert np.all(np.isfinite(scores["image"]))
        assert np.any(scores["question"] != 0)


def test_gradient_component_sum_vanishes_for_minilm(stage_easyvqa):
    """MiniLM starts with LayerNorm, so the plain sum over embedding components is zero.

    This is why text atoms are scored by gradient x input instead.
    """
    model, datapoint = stage_easyvqa
    batch = model.encode([datapoint])
    embeddings = batch.inputs["question"].clone().requires_grad_(True)
    output = model.forward(batch.with_inputs({**batch.inputs, "question": embeddings}))
    (gradient,) = torch.autograd.grad(output.logits[0, 0], embeddings)
    positions = batch.atom_positions["question"][0]

    component_sums = gradient[0, positions].sum(dim=-1).abs().max().item()
    scale = gradient[0, positions].abs().sum(dim=-1).max().item()
    scores = gradient_importance(model, datapoint, class_target(0))["question"]

    assert component_sums < 1e-4 * scale
    assert np.abs(scores).max() > 1e-3 * scale
