"""The committed built-in model: its accuracy, its interface and its smoothness."""

import json

import numpy as np
import pytest
import torch

from engine.datasets.easyvqa import EasyVQA
from engine.interface import MultimodalModel
from engine.models import load_model
from engine.models.easyvqa_net import DEFAULT_WEIGHTS, load_easyvqa_model
from engine.models.train import CHECK_STRIDE


@pytest.fixture(scope="module")
def model():
    return load_easyvqa_model()


def test_model_reproduces_model_card_accuracy(model):
    metrics = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    test = EasyVQA("test")
    indices = range(0, len(test), CHECK_STRIDE)

    predictions = model.predict([test.datapoint(i) for i in indices]).logits.argmax(dim=1)
    labels = torch.tensor([test.label(i) for i in indices])
    accuracy = float((predictions == labels).float().mean())

    assert accuracy == pytest.approx(metrics["check_subset"]["accuracy"], abs=1e-9)


def test_model_implements_protocol(model):
    assert isinstance(model, MultimodalModel)
    assert [m.kind for m in model.modalities] == ["image", "text"]
    assert len(model.label_names) == 13


def test_model_predict_equals_forward_of_encode(model):
    test = EasyVQA("test")
    datapoints = [test.datapoint(i) for i in (0, 1, 2, 500, 9000)]

    with torch.no_grad():
        direct = model.forward(model.encode(datapoints))
    batched = model.predict(datapoints, batch_size=2)

    np.testing.assert_allclose(batched.logits.numpy(), direct.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(batched.features.numpy(), direct.features.numpy(), atol=1e-4)
    assert batched.features.shape == (5, model.n_features)


def test_model_encode_keeps_only_word_tokens(model):
    batch = model.encode([{"image": np.zeros((64, 64, 3), np.float32),
                           "question": "what color is the shape?"}])

    assert batch.atoms["question"][0] == ["what", "color", "is", "the", "shape", "?"]
    assert batch.atom_positions["question"][0] == [1, 2, 3, 4, 5, 6]


def test_model_missing_weights_file_names_path(tmp_path):
    missing = tmp_path / "absent.pt"

    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_model("easyvqa-minilm-cnn", missing)


def test_model_unknown_name_lists_known_models():
    with pytest.raises(KeyError, match="easyvqa-minilm-cnn"):
        load_model("resnet-vqa")
