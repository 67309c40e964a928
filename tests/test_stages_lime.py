"""Stage U by LIME: additive models with known weights, seeds, shared perturbations."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from stage_toy_models import SeriesModel, series_datapoints

from engine.interface import EncodedBatch, Modality, ModelOutput
from engine.stages import (
    class_target,
    feature_target,
    gradient_importance,
    lime_importance,
    lime_importances,
    slic_segments,
)


@pytest.fixture(scope="module")
def stage_easyvqa():
    """The built-in model and one easy-VQA test datapoint."""
    from engine.datasets.easyvqa import EasyVQA
    from engine.models.easyvqa_net import load_easyvqa_model

    return load_easyvqa_model(), EasyVQA("test").datapoint(0)


class BagOfWordsModel:
    """A text-only model whose logit is the sum of a fixed value per token.

    "[UNK]" is a special token with value zero and is not an atom, like the unknown
    token of a WordPiece tokenizer, so masking a token removes its value exactly.
    """

    name = "bag-of-words"
    modalities = (Modality("question", "text"),)
    label_names = ("high", "low")
    n_features = 1
    values = {"what": 1.0, "color": -2.0, "is": 0.5, "the": 0.0, "shape": 3.0, "?": -1.0,
              "[UNK]": 0.0}

    def encode(self, datapoints: Sequence[dict]) -> EncodedBatch:
        words = [str(d["question"]).split() for d in datapoints]
        length = max(len(w) for w in words)
        embeddings = torch.zeros((len(words), length, 1), dtype=torch.float64)
        for row, tokens in enumerate(words):
            embeddings[row, :len(tokens), 0] = torch.tensor([self.values[t] for t in tokens])
        atoms = [[t for t in tokens if t != "[UNK]"] for tokens in words]
        positions = [[p for p, t in enumerate(tokens) if t != "[UNK]"] for tokens in words]
        return EncodedBatch(inputs={"question": embeddings}, atoms={"question": atoms},
                            atom_positions={"question": positions})

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        logit = batch.inputs["question"][..., 0].sum(dim=1)
        return ModelOutput(torch.stack([logit, -logit], dim=1), logit[:, None])


class RedSumModel:
    """An image-only model whose logit is the sum of the red channel."""

    name = "red-sum"
    modalities = (Modality("image", "image"),)
    label_names = ("red", "not red")
    n_features = 1

    def encode(self, datapoints: Sequence[dict]) -> EncodedBatch:
        images = np.stack([np.asarray(d["image"], dtype=np.float64) for d in datapoints])
        return EncodedBatch(inputs={"image": torch.tensor(images).permute(0, 3, 1, 2)})

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        logit = batch.inputs["image"][:, 0].sum(dim=(1, 2))
        return ModelOutput(torch.stack([logit, -logit], dim=1), logit[:, None])


def test_lime_text_recovers_token_values():
    model = BagOfWordsModel()
    datapoint = {"question": "what color is the shape ?"}
    expected = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])

    result = lime_importance(model, datapoint, class_target(0), "question", n_samples=1000)
    negative = lime_importance(model, datapoint, class_target(1), "question", n_samples=1000)

    assert result.segments is None
    # Ridge regression (alpha = 1) shrinks the weights slightly towards zero.
    np.testing.assert_allclose(result.scores, expected, atol=0.05 * np.abs(expected).max())
    np.testing.assert_allclose(negative.scores, -result.scores, rtol=1e-10)
    # For a linear model, gradient x input gives the same values exactly.
    gradient = gradient_importance(model, datapoint, class_target(0))["question"]
    np.testing.assert_allclose(gradient, expected, rtol=1e-12)


def test_lime_image_recovers_superpixel_sums():
    model = RedSumModel()
    image = np.zeros((16, 16, 3), dtype=np.float32)
    image[:8, :8], image[:8, 8:] = [0.2, 0.5, 0.9], [0.9, 0.9, 0.2]
    image[8:, :8], image[8:, 8:] = [0.1, 0.7, 0.3], [0.6, 0.3, 0.6]
    image[5:11, 5:11] = [0.9, 0.1, 0.1]

    result = lime_importance(model, {"image": image}, class_target(0), "image", n_samples=1000,
                             n_segments=16)

    # Switching a superpixel off replaces its pixels by the mean colour of the image.
    fill = image[..., 0].mean()
    expected = np.array([np.sum(image[result.segments == s, 0] - fill)
                         for s in range(result.weights.size)])
    assert result.weights.size >= 5
    np.testing.assert_allclose(result.weights, expected, atol=0.05 * np.abs(expected).max())
    np.testing.assert_array_equal(result.scores, result.weights[result.segments])


@pytest.mark.parametrize("modality", ["image", "question"])
def test_lime_seed_fixes_weights(stage_easyvqa, modality):
    model, datapoint = stage_easyvqa
    target = class_target(0)

    first = lime_importance(model, datapoint, target, modality, n_samples=100, random_state=3)
    again = lime_importance(model, datapoint, target, modality, n_samples=100, random_state=3)
    other = lime_importance(model, datapoint, target, modality, n_samples=100, random_state=4)

    np.testing.assert_array_equal(first.weights, again.weights)
    assert not np.allclose(first.weights, other.weights)


def test_lime_easyvqa_shapes(stage_easyvqa):
    model, datapoint = stage_easyvqa
    tokens = model.encode([datapoint]).atoms["question"][0]
    targets = [class_target(2), feature_target(5)]

    images = lime_importances(model, datapoint, targets, "image", n_samples=100)
    texts = lime_importances(model, datapoint, targets, "question", n_samples=100)
    single = lime_importance(model, datapoint, targets[1], "question", n_samples=100)

    for result in images:
        assert result.scores.shape == (64, 64)
        assert result.segments.shape == (64, 64)
        assert 10 <= result.weights.size <= 100
        np.testing.assert_array_equal(result.scores, result.weights[result.segments])
    for result in texts:
        assert result.scores.shape == (len(tokens),)
    assert [result.target for result in texts] == targets
    # Shared perturbations give each target the weights of a separate call.
    np.testing.assert_allclose(texts[1].weights, single.weights, rtol=1e-10)


def test_slic_segments_tens_on_easyvqa(stage_easyvqa):
    _, datapoint = stage_easyvqa

    segments = slic_segments(datapoint["image"])

    assert segments.shape == (64, 64)
    assert 20 <= segments.max() + 1 <= 80
    np.testing.assert_array_equal(np.unique(segments), np.arange(segments.max() + 1))


def test_lime_rejects_vector_modality():
    model = SeriesModel()
    with pytest.raises(ValueError, match="image and text"):
        lime_importance(model, series_datapoints(1)[0], class_target(0), "series")


def test_lime_text_keeps_subword_tokens(stage_easyvqa):
    model, datapoint = stage_easyvqa
    question = {**datapoint, "question": "what is the teal shape?"}
    tokens = model.encode([question]).atoms["question"][0]

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = lime_importance(model, question, class_target(0), "question", n_samples=60)

    assert "##l" in tokens
    assert result.scores.shape == (len(tokens),)
