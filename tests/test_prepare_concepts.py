"""Preparation of a concept study, with the real built-in model and real easy-VQA data.

The module loads the model once and calls ``prepare_concept_study`` directly, as
``mviz prepare`` does for a concept study file, so it does not reload the model per call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from study_files import write_study_copy

from engine.stages import RegularizationPath, SparseModelFit
from studies import paths
from studies.bundles import COMPLETE_MARKER, list_items, load_arrays, load_bundle
from studies.context import POOL_SPLIT, DatasetView, ModelContext
from studies.definition import load_study
from studies.errors import StudyInputError
from studies.prepare_concepts import (
    concept_item_key,
    local_datapoint,
    prepare_concept_study,
    select_concept_features,
)

BUILT_IN = paths.STUDIES_DIR / "easyvqa_concepts.yaml"
# Validation questions whose real model outputs stand for the whole split in this module.
SEEDED_QUESTIONS = 200
POOL_SIZE = 150


def write_concept_study(folder, **changes):
    return write_study_copy(BUILT_IN, folder, **changes)


def seed_validation_outputs(context: ModelContext, n_questions: int) -> None:
    """Write the model's real outputs on the first validation questions as the split's cache.

    ``ModelContext`` then draws the R_g pool and fits P from these questions only, which
    takes well under a minute instead of the many minutes that the whole split takes.
    NOTE: this writes the cache file that ``ModelContext.split_outputs`` reads, with its
    arrays predictions, labels and features.
    """
    dataset = context.dataset(POOL_SPLIT)
    indices = np.arange(n_questions)
    output = context.model.predict(DatasetView(dataset, indices))
    path = context._outputs_path(POOL_SPLIT)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path,
                        predictions=output.logits.argmax(dim=1).numpy(),
                        labels=np.array([dataset.label(int(i)) for i in indices]),
                        features=output.features.numpy().astype(np.float32))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 3-feature concept study (1 practice) prepared once into its own data folder."""
    root = tmp_path_factory.mktemp("concepts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MVIZ_DATA_DIR", str(root / "data"))
        study = write_concept_study(root, **{"name": "tiny-concepts", "selection.items": 3,
                                             "selection.practice": 1,
                                             "explanations.rg_pool": POOL_SIZE})
        definition = load_study(study)
        context = ModelContext(definition.model, definition.dataset, definition.weights)
        seed_validation_outputs(context, SEEDED_QUESTIONS)
        counts = prepare_concept_study(definition, context, force=False)
        yield {"definition": definition, "counts": counts, "name": "tiny-concepts",
               "data": root / "data", "context": context, "root": root}


def test_prepare_concepts_writes_bundles(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))

    item_keys, practice_keys = list_items(prepared["name"])

    assert prepared["counts"] == (3, 0)
    assert len(item_keys) == 3
    assert practice_keys == item_keys[:1]
    for key in item_keys:
        bundle = load_bundle(prepared["name"], key)
        arrays = load_arrays(prepared["name"], key)
        local = bundle["R_l"]
        assert key == concept_item_key(bundle["feature"])
        assert bundle["practice"] == (key in practice_keys)
        assert (bundle["dir"] / COMPLETE_MARKER).is_file()
        assert arrays[local["image"]["array"]].shape == (64, 64, 3)
        assert arrays[local["image_gradient"]["array"]].shape == (64, 64)
        assert len(local["token_gradient"]) == len(local["tokens"])
        assert local["split"] == POOL_SPLIT
        for ranking in ("top", "bottom"):
            assert len(bundle["R_g"][ranking]) == 3
            for example in bundle["R_g"][ranking]:
                assert (bundle["dir"] / example["png"]).is_file()
                assert (bundle["dir"] / example["image_gradient"]["png"]).is_file()
                assert len(example["token_gradient"]) == len(example["tokens"])


def test_prepare_concepts_features_are_sparse_top(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    fit = prepared["context"].sparse_fit("model")
    item_keys, _ = list_items(prepared["name"])

    features = [load_bundle(prepared["name"], key)["feature"] for key in item_keys]

    assert features == select_concept_features(fit, 3, 5)
    # The largest weight of the whole model belongs to some class's z_top, so it comes first.
    _, strongest = np.unravel_index(np.argmax(np.abs(fit.coef)), fit.coef.shape)
    assert features[0] == strongest
    z_tops = {j for c in range(fit.coef.shape[0]) for j, _ in fit.top_features(c, 5)}
    assert set(features) <= z_tops


def test_prepare_concepts_activations_ordered(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    model = prepared["context"].model
    validation = prepared["context"].dataset(POOL_SPLIT)

    for key in list_items(prepared["name"])[0]:
        bundle = load_bundle(prepared["name"], key)
        top = [example["activation"] for example in bundle["R_g"]["top"]]
        bottom = [example["activation"] for example in bundle["R_g"]["bottom"]]
        local = bundle["R_l"]

        assert top == sorted(top, reverse=True)
        assert bottom == sorted(bottom)
        assert min(top) >= max(bottom)
        assert max(bottom) <= local["activation"] <= min(top)
        with torch.no_grad():
            datapoint = validation.datapoint(local["index"])
            features = model.forward(model.encode([datapoint])).features[0]
        assert local["question"] == datapoint["question"]
        assert features[bundle["feature"]].item() == pytest.approx(local["activation"], abs=1e-4)


def test_prepare_concepts_second_run_reuses(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    key = list_items(prepared["name"])[0][0]
    marker = load_bundle(prepared["name"], key)["dir"] / COMPLETE_MARKER
    before = marker.stat().st_mtime_ns

    counts = prepare_concept_study(prepared["definition"], prepared["context"], force=False)

    assert counts == (0, 3)
    assert marker.stat().st_mtime_ns == before


def test_prepare_concepts_explicit_features(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    study = write_concept_study(prepared["root"], **{
        "name": "chosen-concepts", "selection.items": 2, "selection.practice": 1,
        "selection.indices": [7, 5], "explanations.rg_pool": POOL_SIZE})

    counts = prepare_concept_study(load_study(study), prepared["context"], force=False)

    assert counts == (2, 0)
    item_keys, practice_keys = list_items("chosen-concepts")
    assert item_keys == ["f007", "f005"]
    assert practice_keys == ["f007"]


def test_prepare_concepts_feature_out_of_range(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    study = write_concept_study(prepared["root"], **{
        "name": "bad-concepts", "selection.items": 2, "selection.practice": 1,
        "selection.indices": [5, 999]})

    with pytest.raises(StudyInputError, match=r"selection.indices\[1\]: feature 999 is out of"):
        prepare_concept_study(load_study(study), prepared["context"], force=False)
    assert not (prepared["data"] / "studies" / "bad-concepts").exists()


def test_local_datapoint_takes_median_of_high():
    evenly_spread = np.arange(11.0)[::-1]  # position p has activation 10 - p
    sparse = np.array([0.0, 0.0, 9.0, 0.0, 8.0, 0.0, 1.0, 10.0, 0.0, 6.0])

    # Median 5 and maximum 10: the candidates are 8, 9 and 10, of median 9.
    assert local_datapoint(evenly_spread) == 1
    # Median 0 and maximum 10: the candidates are 10, 9, 8 and 6; without the top two
    # (positions 7 and 2) they are 8 and 6, and the lower median is 6.
    assert local_datapoint(sparse, exclude=[7, 2]) == 9
    # When every candidate is excluded they all stay: 6, 8, 9 and 10, of lower median 8.
    assert local_datapoint(sparse, exclude=[7, 2, 4, 9]) == 4


def test_select_concept_features_orders_by_weight():
    coef = np.array([[3.0, 0.0, -1.0, 0.5],
                     [0.0, 2.5, 0.0, 3.0]])
    path = RegularizationPath(np.ones(1), np.array([5]), np.ones(1), np.ones(1))
    fit = SparseModelFit(np.zeros(4), np.ones(4), coef, np.zeros(2), np.arange(2), path, 0, 0.5)

    # z_top of class 0 is (0: 3.0, 3: 0.5) and of class 1 (3: 3.0, 1: 2.5).
    assert select_concept_features(fit, 3, 2) == [0, 3, 1]
    with pytest.raises(StudyInputError, match="only 3 distinct features"):
        select_concept_features(fit, 4, 2)
