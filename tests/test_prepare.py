"""``mviz prepare`` on real easy-VQA items with the committed model, and its bad input."""


import numpy as np
import pytest
from study_files import write_study_copy

from studies import paths
from studies.bundles import COMPLETE_MARKER, list_items, load_answer_key, load_bundle
from studies.cli import main

BUILT_IN = paths.STUDIES_DIR / "easyvqa_simulation.yaml"


def write_study(folder, **changes):
    return write_study_copy(BUILT_IN, folder, **changes)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 3-item study (1 practice) prepared once into its own data folder."""
    root = tmp_path_factory.mktemp("prepared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MVIZ_DATA_DIR", str(root / "data"))
        study = write_study(root, **{"name": "tiny-simulation", "selection.items": 3,
                                     "selection.practice": 1, "selection.model_wrong_share": None,
                                     "explanations.lime_samples": 60})
        exit_code = main(["prepare", str(study)])
        yield {"root": root, "study": study, "exit_code": exit_code,
               "name": "tiny-simulation", "data": root / "data"}


def test_prepare_writes_complete_bundles(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))

    item_keys, practice_keys = list_items(prepared["name"])

    assert prepared["exit_code"] == 0
    assert len(item_keys) == 3
    assert len(practice_keys) == 1
    for key in item_keys:
        bundle = load_bundle(prepared["name"], key)
        assert set(bundle["stages"]) == {"U", "C", "R_l", "R_g", "P"}
        assert (bundle["dir"] / COMPLETE_MARKER).is_file()
        assert (bundle["dir"] / bundle["stages"]["U"]["image_gradient"]["png"]).is_file()
        assert len(bundle["stages"]["U"]["token_gradient"]) == len(bundle["tokens"])


def test_prepare_bundle_keeps_answer_key_apart(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    answer_key = load_answer_key(prepared["name"])

    for key, answers in answer_key.items():
        bundle = load_bundle(prepared["name"], key)
        text = (bundle["dir"] / "bundle.json").read_text()
        assert answers["prediction"] in bundle["choices"]
        assert answers["ground_truth"] in bundle["choices"]
        assert bundle["choices"] == sorted(bundle["choices"])
        assert "prediction" not in text
        assert "ground_truth" not in text
        names = [p.name for p in bundle["dir"].iterdir()]
        assert not any(answers["prediction"] in name for name in names)


def test_prepare_features_are_the_p_top_features(prepared, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    key = list_items(prepared["name"])[0][0]

    stages = load_bundle(prepared["name"], key)["stages"]
    p_features = [f["feature"] for f in stages["P"]["features"]]

    assert [f["feature"] for f in stages["R_l"]] == p_features
    assert [f["feature"] for f in stages["R_g"]] == p_features
    weights = [f["weight"] for f in stages["P"]["features"]]
    assert weights == sorted(weights, reverse=True)
    for feature in stages["R_g"]:
        top = [example["activation"] for example in feature["top"]]
        bottom = [example["activation"] for example in feature["bottom"]]
        assert len(top) == 3
        assert min(top) >= max(bottom)


def test_prepare_second_run_reuses_bundles(prepared, monkeypatch, capsys):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(prepared["data"]))
    key = list_items(prepared["name"])[0][0]
    marker = load_bundle(prepared["name"], key)["dir"] / COMPLETE_MARKER
    before = marker.stat().st_mtime_ns

    exit_code = main(["prepare", str(prepared["study"])])

    assert exit_code == 0
    assert "0 bundles built, 3 reused" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == before


@pytest.mark.parametrize(("changes", "expected"), [
    ({"conditions": ["U", "U+Q"]}, "U+Q"),
    ({"dataset": "vqa-v9"}, "vqa-v9"),
    ({"model": "resnet-vqa"}, "resnet-vqa"),
    ({"weights": "data/weights/missing.pt"}, "missing.pt"),
    ({"selection.indices": [0, 1, 99_999]}, "99999"),
])
def test_prepare_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, changes,
                                                      expected):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(tmp_path / "data"))
    study = write_study(tmp_path, **{"selection.items": 3, "selection.practice": 1, **changes})

    exit_code = main(["prepare", str(study)])

    assert exit_code == 2
    assert expected in capsys.readouterr().err
    assert not list((tmp_path / "data").glob("studies/*/bundles/*/COMPLETE"))
    assert not list((tmp_path / "data").glob("studies/*/answer_key.json"))


def test_prepare_answer_sheet_order_ignores_prediction():
    from studies.selection import answer_choices

    colors = ["black", "blue", "brown", "gray", "green", "red", "teal", "yellow"]
    first = answer_choices("red", "blue", colors, 4, seed=3)
    swapped = answer_choices("blue", "red", colors, 4, seed=3)

    assert first == swapped
    assert first == sorted(first)
    assert {"red", "blue"} <= set(first)
    assert len(first) == 4


def test_prepare_selection_fixes_wrong_share():
    from types import SimpleNamespace

    from studies.selection import select_datapoints

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 400)
    predictions = np.where(rng.random(400) < 0.3, (labels + 1) % 5, labels)
    types = np.array(["color"] * 400)
    selection = SimpleNamespace(items=22, practice=2, seed=7, exclude_question_types=[],
                                model_wrong_share=0.25, indices=None, split="test")

    chosen = select_datapoints(selection, types, predictions, labels)

    wrong = sum(predictions[i] != labels[i] for i in chosen.counted)
    assert len(chosen.counted) == 20
    assert len(chosen.practice) == 2
    assert wrong == 5
    assert not set(chosen.practice) & set(chosen.counted)
    assert chosen == select_datapoints(selection, types, predictions, labels)
