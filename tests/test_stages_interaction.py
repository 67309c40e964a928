"""Stage C by second-order gradient: analytic values, batched against loop, symmetry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stage_toy_models import ToyImageTextModel, VectorPairModel, toy_image_datapoint

from engine.stages import (
    class_target,
    feature_target,
    grid_regions,
    second_order_gradient,
    second_order_gradient_loop,
    top_atoms,
)


@pytest.fixture(scope="module")
def stage_easyvqa():
    """The built-in model and one easy-VQA test datapoint."""
    from engine.datasets.easyvqa import EasyVQA
    from engine.models.easyvqa_net import load_easyvqa_model

    return load_easyvqa_model(), EasyVQA("test").datapoint(0)


def _vector_datapoint(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x1": rng.normal(size=4), "x2": rng.normal(size=3)}


def _assert_same(batched: np.ndarray, loop: np.ndarray, rtol: float = 1e-5) -> None:
    """Compare relative to the largest value, so near-zero entries do not dominate."""
    assert batched.shape == loop.shape
    np.testing.assert_allclose(batched, loop, rtol=rtol, atol=rtol * np.abs(loop).max())


def test_second_order_additive_model_is_zero():
    model = VectorPairModel(lambda x1, x2: torch.sin(x1).sum(dim=1) + (x2**3).sum(dim=1)
                            + torch.exp(x2).sum(dim=1))
    datapoint = _vector_datapoint()

    for source, destination, shape in (("x1", "x2", (4, 3)), ("x2", "x1", (3, 4))):
        for function in (second_order_gradient, second_order_gradient_loop):
            scores = function(model, datapoint, class_target(0), source=source,
                              destination=destination)
            assert scores.shape == shape
            assert np.abs(scores).max() < 1e-6


def test_second_order_bilinear_model_equals_weights():
    weights = torch.tensor(np.random.default_rng(1).normal(size=(4, 3)))
    model = VectorPairModel(lambda x1, x2: ((x1 @ weights) * x2).sum(dim=1))
    datapoint = _vector_datapoint(2)

    forward = second_order_gradient(model, datapoint, class_target(0), source="x1",
                                    destination="x2")
    backward = second_order_gradient(model, datapoint, class_target(0), source="x2",
                                     destination="x1")
    negative = second_order_gradient(model, datapoint, class_target(1), source="x1",
                                     destination="x2")

    for via in ("source", "destination"):
        np.testing.assert_allclose(second_order_gradient(
            model, datapoint, class_target(0), source="x1", destination="x2", source_atoms=[2, 1],
            via=via), weights.numpy()[[2, 1]], rtol=1e-12)
    np.testing.assert_allclose(forward, weights.numpy(), rtol=1e-12)
    np.testing.assert_allclose(backward, weights.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(negative, -weights.numpy(), rtol=1e-12)


def test_second_order_bilinear_source_atoms_select_rows():
    weights = torch.tensor(np.random.default_rng(1).normal(size=(4, 3)))
    model = VectorPairModel(lambda x1, x2: ((x1 @ weights) * x2).sum(dim=1))

    scores = second_order_gradient(model, _vector_datapoint(), class_target(0), source="x1",
                                   destination="x2", source_atoms=[3, 0])

    np.testing.assert_allclose(scores, weights.numpy()[[3, 0]], rtol=1e-12)


@pytest.mark.parametrize("via", ["auto", "source", "destination"])
@pytest.mark.parametrize("target", [class_target(0), feature_target(2)])
def test_second_order_toy_batched_equals_loop(target, via):
    model, datapoint = ToyImageTextModel(), toy_image_datapoint(4)

    text_to_image = second_order_gradient(model, datapoint, target, source="question",
                                          destination="image", source_atoms=[5, 0, 2])
    image_to_text = second_order_gradient(model, datapoint, target, source="image",
                                          destination="question", grid_cell=2, via=via)

    assert text_to_image.shape == (3, 6, 6)
    assert image_to_text.shape == (9, 6)
    assert np.abs(text_to_image).max() > 1e-6
    _assert_same(text_to_image, second_order_gradient_loop(
        model, datapoint, target, source="question", destination="image",
        source_atoms=[5, 0, 2]), rtol=1e-10)
    _assert_same(image_to_text, second_order_gradient_loop(
        model, datapoint, target, source="image", destination="question", grid_cell=2),
        rtol=1e-10)


def test_second_order_toy_region_sums_match_reverse():
    """Mixed partial derivatives commute, so region sums of text-to-image equal image-to-text."""
    model, datapoint = ToyImageTextModel(), toy_image_datapoint(5)
    regions = grid_regions(6, 6, 3)

    text_to_image = second_order_gradient(model, datapoint, class_target(1), source="question",
                                          destination="image")
    image_to_text = second_order_gradient(model, datapoint, class_target(1), source="image",
                                          destination="question", regions=regions)

    sums = np.stack([text_to_image[:, regions == label].sum(axis=1) for label in range(4)])
    np.testing.assert_allclose(sums, image_to_text, rtol=1e-10, atol=1e-14)


def test_second_order_chunks_equal_one_pass():
    model, datapoint = ToyImageTextModel(), toy_image_datapoint(6)

    whole = second_order_gradient(model, datapoint, class_target(0), source="image",
                                  destination="question", grid_cell=1)
    chunked = second_order_gradient(model, datapoint, class_target(0), source="image",
                                    destination="question", grid_cell=1, chunk_size=7)

    assert whole.shape == (36, 6)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-15)


def test_second_order_rejects_invalid_requests():
    model, datapoint = ToyImageTextModel(), toy_image_datapoint()
    target = class_target(0)

    with pytest.raises(ValueError, match="two different modalities"):
        second_order_gradient(model, datapoint, target, source="image", destination="image")
    with pytest.raises(ValueError, match="does not exist"):
        second_order_gradient(model, datapoint, target, source="audio", destination="image")
    with pytest.raises(ValueError, match="out of range"):
        second_order_gradient(model, datapoint, target, source="question", destination="image",
                              source_atoms=[6])
    with pytest.raises(ValueError, match="do not occur"):
        second_order_gradient(model, datapoint, target, source="image", destination="question",
                              source_atoms=[99])
    with pytest.raises(ValueError, match="text or vector destination"):
        second_order_gradient(model, datapoint, target, source="question", destination="image",
                              via="destination")
    with pytest.raises(ValueError, match="chunk_size"):
        second_order_gradient(model, datapoint, target, source="image", destination="question",
                              chunk_size=0)


def test_top_atoms_orders_by_absolute_score():
    scores = np.array([0.1, -0.5, 0.3, 0.5, 0.0])

    assert top_atoms(scores, 3) == [1, 3, 2]
    assert top_atoms(scores, 10) == [1, 3, 2, 0, 4]
    assert top_atoms(scores, 0) == []


def test_grid_regions_row_major():
    regions = grid_regions(64, 64, 8)

    assert regions.shape == (64, 64)
    assert len(np.unique(regions)) == 64
    assert regions[0, 8] == 1
    assert regions[8, 0] == 8
    assert regions[63, 63] == 63
    assert len(np.unique(grid_regions(10, 10, 4))) == 9


def test_second_order_easyvqa_batched_equals_loop(stage_easyvqa):
    model, datapoint = stage_easyvqa
    n_tokens = len(model.encode([datapoint]).atoms["question"][0])
    target = class_target(int(model.predict([datapoint]).logits[0].argmax()))

    text_to_image = second_order_gradient(model, datapoint, target, source="question",
                                          destination="image")
    image_to_text = second_order_gradient(model, datapoint, target, source="image",
                                          destination="question", grid_cell=16, via="source")
    image_to_text_reverse = second_order_gradient(model, datapoint, target, source="image",
                                                  destination="question", grid_cell=16)

    assert text_to_image.shape == (n_tokens, 64, 64)
    assert image_to_text.shape == (16, n_tokens)
    assert np.abs(text_to_image).max() > 0
    _assert_same(text_to_image, second_order_gradient_loop(
        model, datapoint, target, source="question", destination="image"))
    _assert_same(image_to_text, second_order_gradient_loop(
        model, datapoint, target, source="image", destination="question", grid_cell=16))
    # The reverse direction, summed over each cell, gives the same scores.
    _assert_same(image_to_text_reverse, image_to_text)
