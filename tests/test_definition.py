"""Tests of study definitions: loading, defaults, condition stages and validation messages."""

from __future__ import annotations

import copy
import typing
from pathlib import Path

import pytest
import yaml

from studies import paths
from studies.definition import (
    CONDITION_STAGES,
    KNOWN_DATASETS,
    KNOWN_MODELS,
    StudyDefinition,
    find_study,
    load_study,
)
from studies.errors import StudyInputError

VALID_STUDY = {
    "name": "test-simulation",
    "type": "simulation",
    "title": "Predict the answer of a visual question answering model",
    "dataset": "easy-vqa",
    "model": "easyvqa-minilm-cnn",
    "weights": "data/weights/easyvqa_minilm_cnn.pt",
    "selection": {
        "split": "test",
        "items": 22,
        "practice": 2,
        "seed": 7,
        "exclude_question_types": ["yes/no"],
        "model_wrong_share": 0.25,
        "indices": None,
    },
    "explanations": {"top_tokens": 3, "top_features": 5, "rg_examples": 3, "rg_pool": 2000,
                     "lime_samples": 500, "seed": 0, "sparse_fit_to": "model"},
    "conditions": ["U", "U+C", "U+C+R_l", "U+C+R_l+R_g", "MultiViz", "R_l+P", "R_g+P"],
    "participants_per_condition": 3,
    "choices": 4,
    "completion_url": None,
}


def write_study(folder: Path, data: dict, file_name: str = "study.yaml") -> Path:
    path = folder / file_name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def study_with(**changes) -> dict:
    """Return a copy of VALID_STUDY; a key such as "selection__items" changes a nested value."""
    data = copy.deepcopy(VALID_STUDY)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value
    return data


def load_error(tmp_path: Path, data: dict) -> str:
    path = write_study(tmp_path, data)
    with pytest.raises(StudyInputError) as error:
        load_study(path)
    return str(error.value)


def test_load_study_valid_file(tmp_path):
    definition = load_study(write_study(tmp_path, VALID_STUDY))

    assert definition.name == "test-simulation"
    assert definition.selection.items == 22
    assert definition.selection.counted == 20
    assert definition.selection.exclude_question_types == ["yes/no"]
    assert definition.conditions == VALID_STUDY["conditions"]
    assert definition.weights_path == paths.REPOSITORY_ROOT / "data/weights/easyvqa_minilm_cnn.pt"


def test_load_study_builtin_file():
    definition = load_study(paths.STUDIES_DIR / "easyvqa_simulation.yaml")

    assert definition.type == "simulation"
    assert len(definition.conditions) == 7


def test_defaults_fill_conditions_and_choices(tmp_path):
    data = study_with()
    for key in ("conditions", "choices", "explanations", "weights", "completion_url"):
        del data[key]
    definition = load_study(write_study(tmp_path, data))

    assert definition.conditions == list(CONDITION_STAGES["simulation"])
    assert definition.choices == 4
    assert definition.explanations.top_features == 5
    assert definition.explanations.sparse_fit_to == "model"
    assert definition.weights_path is None


def test_defaults_concept_study_has_no_choices(tmp_path):
    data = study_with(type="concept")
    for key in ("conditions", "choices"):
        del data[key]
    del data["selection"]["model_wrong_share"]
    definition = load_study(write_study(tmp_path, data))

    assert definition.conditions == ["R_l", "R_l+R_g without maps", "R_l+R_g"]
    assert definition.choices is None


def test_condition_stages_simulation():
    definition = StudyDefinition.model_validate(VALID_STUDY)

    assert definition.condition_stages("U") == {"U"}
    assert definition.condition_stages("U+C+R_l") == {"U", "C", "R_l"}
    assert definition.condition_stages("MultiViz") == {"U", "C", "R_l", "R_g", "P"}
    assert definition.condition_stages("R_g+P") == {"R_g", "P"}
    with pytest.raises(StudyInputError, match="unknown condition 'No viz'"):
        definition.condition_stages("No viz")


def test_feature_conditions_and_stages_needed():
    full = StudyDefinition.model_validate(VALID_STUDY)
    assert full.feature_conditions == ("U+C+R_l", "U+C+R_l+R_g", "MultiViz", "R_l+P", "R_g+P")
    assert full.stages_needed == {"U", "C", "R_l", "R_g", "P"}

    small = StudyDefinition.model_validate(study_with(conditions=["U", "U+C"]))
    assert small.feature_conditions == ()
    assert small.stages_needed == {"U", "C"}

    probe = StudyDefinition.model_validate(study_with(conditions=["R_g+P"]))
    assert probe.stages_needed == {"R_g", "P"}


def test_feature_conditions_error_study():
    data = study_with(type="error", conditions=["No viz", "MultiViz"])
    del data["choices"]
    del data["selection"]["model_wrong_share"]
    definition = StudyDefinition.model_validate(data)

    assert definition.condition_stages("No viz") == frozenset()
    assert definition.feature_conditions == ("MultiViz",)


def test_unknown_condition_message(tmp_path):
    conditions = ["U", "U+C", "U+Q"]
    message = load_error(tmp_path, study_with(conditions=conditions))

    assert str(tmp_path / "study.yaml") in message
    assert "conditions[2]" in message
    assert "'U+Q'" in message
    assert "simulation study" in message
    assert "allowed: U, U+C, U+C+R_l, U+C+R_l+R_g, MultiViz, R_l+P, R_g+P" in message


def test_condition_of_other_type_rejected(tmp_path):
    message = load_error(tmp_path, study_with(conditions=["U", "No viz"]))

    assert "conditions[1]: unknown condition 'No viz' for a simulation study" in message


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("type", "survey", "allowed: simulation, concept, error"),
        ("dataset", "vqa-v2", "allowed: easy-vqa"),
        ("model", "resnet", "allowed: easyvqa-minilm-cnn"),
        ("selection__split", "dev", "allowed: train, validation, test"),
        ("explanations__sparse_fit_to", "labels", "allowed: model, ground_truth"),
    ],
)
def test_unknown_value_message(tmp_path, field, value, allowed):
    message = load_error(tmp_path, study_with(**{field: value}))

    assert f"{field.replace('__', '.')}: unknown" in message
    assert repr(value) in message
    assert allowed in message


def test_practice_not_below_items(tmp_path):
    message = load_error(tmp_path, study_with(selection__items=5, selection__practice=5))

    assert "selection.practice" in message
    assert "practice 5 must be smaller than items 5" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("selection__items", 0),
        ("selection__practice", -1),
        ("selection__model_wrong_share", 1.5),
        ("selection__model_wrong_share", -0.1),
        ("participants_per_condition", 0),
        ("choices", 1),
        ("explanations__top_tokens", 0),
    ],
)
def test_out_of_range_value_message(tmp_path, field, value):
    message = load_error(tmp_path, study_with(**{field: value}))

    assert f"{field.replace('__', '.')}: invalid value {value!r}" in message


def test_wrong_value_type_rejected(tmp_path):
    # A quoted number or a boolean is a mistake in a study file, not an integer.
    data = study_with(selection__items="22", participants_per_condition=True)
    message = load_error(tmp_path, data)

    assert "selection.items: invalid value '22'" in message
    assert "participants_per_condition: invalid value True" in message


def test_unknown_keys_rejected(tmp_path):
    message = load_error(tmp_path, study_with(participants=3, selection__size=5))

    assert "participants: unknown key 'participants'" in message
    assert "participants_per_condition" in message
    assert "selection.size: unknown key 'size'; allowed keys: split, items" in message


def test_missing_key_named(tmp_path):
    data = study_with()
    del data["title"]
    del data["selection"]["items"]
    message = load_error(tmp_path, data)

    assert "title: required key is missing" in message
    assert "selection.items: required key is missing" in message


def test_every_problem_reported(tmp_path):
    message = load_error(tmp_path, study_with(dataset="mnist", model="resnet"))

    assert len(message.splitlines()) == 2


@pytest.mark.parametrize("name", ["Easy VQA", "easy_vqa", "-easy", "easy--vqa", ""])
def test_invalid_name_rejected(tmp_path, name):
    message = load_error(tmp_path, study_with(name=name))

    assert f"name: invalid study name {name!r}" in message


def test_duplicate_condition_rejected(tmp_path):
    message = load_error(tmp_path, study_with(conditions=["U", "U+C", "U"]))

    assert "conditions[2]: condition 'U' is listed twice" in message


def test_empty_condition_list_rejected(tmp_path):
    message = load_error(tmp_path, study_with(conditions=[]))

    assert "conditions: the list is empty" in message


def test_question_type_checked_against_dataset(tmp_path):
    message = load_error(tmp_path, study_with(selection__exclude_question_types=["count"]))

    assert "selection.exclude_question_types[0]: unknown question type 'count'" in message
    assert "allowed: shape, color, yes/no" in message


def test_simulation_only_fields_rejected_elsewhere(tmp_path):
    message = load_error(tmp_path, study_with(type="concept", conditions=["R_l"]))

    assert "selection.model_wrong_share: value 0.25 applies to simulation studies only" in message
    assert "choices: value 4 applies to simulation studies only" in message


def test_indices_must_match_items(tmp_path):
    message = load_error(tmp_path, study_with(selection__indices=[1, 2, 2]))

    assert "selection.indices: 3 indices given but items is 22" in message
    assert "an index appears twice" in message


def test_completion_link_appends_code(tmp_path):
    url = "https://app.prolific.com/submissions/complete?cc="
    definition = load_study(write_study(tmp_path, study_with(completion_url=url)))

    assert definition.completion_link("AB12CD34") == url + "AB12CD34"
    assert StudyDefinition.model_validate(VALID_STUDY).completion_link("X") is None


def test_completion_url_must_be_http(tmp_path):
    message = load_error(tmp_path, study_with(completion_url="prolific.com/complete"))

    assert "completion_url: invalid completion URL 'prolific.com/complete'" in message


def test_missing_file_message(tmp_path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(StudyInputError, match="study file not found") as error:
        load_study(missing)

    assert str(missing) in str(error.value)


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntype: simulation\nconditions: [U, U+C\nchoices: 4\n")
    with pytest.raises(StudyInputError) as error:
        load_study(path)

    assert str(path) in str(error.value)
    assert "invalid YAML at line 4" in str(error.value)


def test_duplicate_yaml_key_rejected(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\ntype: simulation\nname: b\n")
    with pytest.raises(StudyInputError, match=r"line 3.*key 'name' appears twice"):
        load_study(path)


def test_non_mapping_file_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- name: a\n")
    with pytest.raises(StudyInputError, match="must be a YAML mapping"):
        load_study(path)


def test_json_round_trip_equal():
    definition = StudyDefinition.model_validate(VALID_STUDY)

    assert StudyDefinition.model_validate_json(definition.model_dump_json()) == definition


def test_find_study_by_name(tmp_path):
    write_study(tmp_path, VALID_STUDY, "a.yaml")
    write_study(tmp_path, study_with(name="other-study"), "b.yaml")
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")

    assert find_study("other-study", tmp_path).name == "other-study"
    assert find_study("test-simulation", tmp_path).selection.items == 22


def test_find_study_not_found_lists_studies(tmp_path):
    write_study(tmp_path, VALID_STUDY, "a.yaml")
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")
    with pytest.raises(StudyInputError) as error:
        find_study("absent", tmp_path)

    message = str(error.value)
    assert "study 'absent' not found" in message
    assert "test-simulation (a.yaml)" in message
    assert "c.yaml" in message


def test_find_study_duplicate_names_rejected(tmp_path):
    write_study(tmp_path, VALID_STUDY, "a.yaml")
    write_study(tmp_path, VALID_STUDY, "b.yaml")
    with pytest.raises(StudyInputError, match="more than one file.*a.yaml, b.yaml"):
        find_study("test-simulation", tmp_path)


def test_find_study_validates_match(tmp_path):
    write_study(tmp_path, study_with(conditions=["U+Q"]), "a.yaml")
    with pytest.raises(StudyInputError, match=r"a.yaml: conditions\[0\]"):
        find_study("test-simulation", tmp_path)


def test_known_names_match_engine_registries():
    from engine.datasets import DATASETS
    from engine.datasets.easyvqa import QuestionType
    from engine.models import MODEL_LOADERS

    assert set(KNOWN_DATASETS) == set(DATASETS)
    assert KNOWN_DATASETS["easy-vqa"] == typing.get_args(QuestionType)
    assert set(KNOWN_MODELS) == set(MODEL_LOADERS)
