"""Concept and error studies in the participant app, driven through AppTest on real SQLite.

The live second-order gradient runs the real built-in model on real easy-VQA test
datapoints; the model is loaded once (``app.live`` caches it for the process).
"""

from __future__ import annotations

import numpy as np
import pytest
from app_fixtures import ERROR_DATAPOINTS, FixtureStudy, build_study
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from test_app_participant import (
    accept_consent,
    markdown_text,
    no_exception,
    open_app,
    participant_row,
    read_instructions,
    responses_of,
    views_shown,
)

from app import live, texts
from app.error_pages import live_request_key
from engine.datasets.easyvqa import EasyVQA
from engine.stages import class_target, second_order_gradient
from studies import paths
from studies.bundles import load_bundle
from studies.coding import CONCEPT_MAX_LENGTH, ERROR_CATEGORIES, ERROR_CATEGORY_CODES
from studies.definition import CONDITION_STAGES, load_study
from studies.errors import StudyInputError
from studies.participation import resume, submit_response
from studies.store import Response

CONCEPT_CONDITIONS = list(CONDITION_STAGES["concept"])
ERROR_CONDITIONS = list(CONDITION_STAGES["error"])
# Images on a concept item page: the colour legend and the R_l map, then per R_g datapoint
# (3 top, 3 bottom) its plain picture, and its map in the condition with maps.
CONCEPT_IMAGES = {"R_l": 2, "R_l+R_g without maps": 2 + 6, "R_l+R_g": 2 + 6 + 6}
MARKDOWN_ELEMENTS = ("markdown", "caption", "title", "header", "subheader", "warning", "error",
                     "info", "success")


def item_key_of(app: AppTest, prefix: str) -> str:
    """Return the item key of the one form widget on the page whose key starts with ``prefix``."""
    keys = [widget.key for widget in [*app.text_input, *app.radio]
            if widget.key and widget.key.startswith(prefix)]
    assert len(keys) == 1, f"expected one {prefix!r} widget, found {keys}"
    return keys[0].removeprefix(prefix)


def submit(app: AppTest) -> None:
    buttons = [button for button in app.button if button.label == texts.SUBMIT_BUTTON]
    assert len(buttons) == 1
    buttons[0].click().run()


def answer_concept(app: AppTest, text: str, confidence: int | None = 4) -> str:
    item_key = item_key_of(app, "concept-")
    app.text_input(key=f"concept-{item_key}").input(text)
    if confidence is not None:
        app.radio(key=f"confidence-{item_key}").set_value(confidence)
    submit(app)
    return item_key


def answer_error(app: AppTest, category: str | None, confidence: int | None = 3) -> str:
    item_key = item_key_of(app, "category-")
    if category is not None:
        app.radio(key=f"category-{item_key}").set_value(category)
    if confidence is not None:
        app.radio(key=f"confidence-{item_key}").set_value(confidence)
    submit(app)
    return item_key


def continue_after_feedback(app: AppTest, item_key: str) -> None:
    assert app.title[0].value == texts.FEEDBACK_TITLE
    app.button(key=f"feedback-continue-{item_key}").click().run()


def start(study: FixtureStudy) -> AppTest:
    app = open_app(study)
    accept_consent(app)
    read_instructions(app)
    return app


def markdown_values(app: AppTest) -> list[str]:
    """Return the text of every element that Streamlit renders as Markdown."""
    return [str(element.value) for kind in MARKDOWN_ELEMENTS for element in getattr(app, kind)]


def image_captions(app: AppTest) -> list[str]:
    return [caption for image in app.get("image") for caption in image.captions]


def count_responses(study: FixtureStudy) -> int:
    with Session(study.engine()) as session:
        return session.scalar(select(func.count()).select_from(Response))


@pytest.fixture(scope="module")
def real_model():
    """The built-in model, loaded once through the app's own cached model context."""
    definition = load_study(paths.STUDIES_DIR / "easyvqa_errors.yaml")
    return live.model_context(definition).model


# --------------------------------------------------------------------------------------
# Concept studies


@pytest.mark.parametrize("condition", CONCEPT_CONDITIONS)
def test_concept_flow_reaches_completion_code(monkeypatch, tmp_path, condition):
    study = build_study(monkeypatch, tmp_path, [condition], n_practice=1, n_counted=2,
                        study_type="concept")
    stages = CONDITION_STAGES["concept"][condition]

    app = open_app(study)
    token = app.query_params["participant"]
    assert texts.CONSENT_BY_TYPE["concept"] in markdown_text(app)
    accept_consent(app)
    instructions = markdown_text(app)
    assert texts.CONCEPT_INSTRUCTIONS_TASK in instructions
    assert texts.INSTRUCTIONS_PRACTICE_UNSCORED.format(practice_items="1 practice item") in instructions
    assert (texts.CONCEPT_STAGE_INSTRUCTIONS["R_g"] in instructions) == ("R_g" in stages)
    assert (texts.CONCEPT_RG_MAPS in instructions) == (condition == "R_l+R_g")
    assert texts.INSTRUCTIONS_HELPFUL not in instructions
    read_instructions(app)

    typed = {}
    for number in range(3):
        assert no_exception(app)
        assert views_shown(app) == set(stages)
        assert len(app.get("image")) == CONCEPT_IMAGES[condition]
        assert not [radio for radio in app.radio if radio.key.startswith("helpful-")]
        item_key = answer_concept(app, f"  red shapes {number} ", confidence=number + 2)
        typed[item_key] = f"red shapes {number}"
        if item_key in study.practice_keys:
            assert "red shapes 0" in app.text.values
            continue_after_feedback(app, item_key)

    assert app.title[0].value == texts.COMPLETION_TITLE
    participant, assigned = participant_row(study, token)
    assert assigned == condition
    assert participant.completion_code == app.code[0].value
    responses = responses_of(study, token)
    assert {key: response.answer for key, response in responses.items()} == typed
    assert sorted(response.confidence for response in responses.values()) == [2, 3, 4]
    assert all(response.helpful_view is None for response in responses.values())


def test_concept_rg_datapoints_follow_condition(monkeypatch, tmp_path):
    without_maps = build_study(monkeypatch, tmp_path / "plain", ["R_l+R_g without maps"],
                               study_type="concept")
    plain_page = start(without_maps)
    with_maps = build_study(monkeypatch, tmp_path / "maps", ["R_l+R_g"], study_type="concept")
    maps_page = start(with_maps)

    # Without maps each R_g datapoint shows its question as text; with maps its words
    # are coloured (HTML spans) instead.
    plain_questions = [value for value in markdown_values(plain_page)
                       if value == "what is drawn in the picture?"]
    assert len(plain_questions) == 6
    assert "what is drawn in the picture?" not in markdown_values(maps_page)
    assert sum("<span" in value for value in markdown_values(maps_page)) == 1 + 6


@pytest.mark.parametrize("typed", ["", "   ", "\t \n"])
def test_concept_blank_text_rejected_and_kept(monkeypatch, tmp_path, typed):
    study = build_study(monkeypatch, tmp_path, ["R_l"], n_practice=0, study_type="concept")
    app = start(study)

    item_key = answer_concept(app, typed, confidence=3)

    assert app.warning[0].value == texts.CONCEPT_MISSING
    assert app.text_input(key=f"concept-{item_key}").value == typed
    assert count_responses(study) == 0


def test_concept_confidence_required(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["R_l"], n_practice=0, study_type="concept")
    app = start(study)

    item_key = answer_concept(app, "circles", confidence=None)

    assert app.warning[0].value == texts.CONFIDENCE_MISSING
    assert app.text_input(key=f"concept-{item_key}").value == "circles"
    assert count_responses(study) == 0


@pytest.mark.parametrize("confidence", [0, 6, -1, 2.5, True, "3"])
def test_confidence_outside_range_rejected(monkeypatch, tmp_path, confidence):
    study = build_study(monkeypatch, tmp_path, ["R_l"], n_practice=0, study_type="concept")
    app = start(study)
    item_key = item_key_of(app, "concept-")

    with Session(study.engine()) as session:
        participant = resume(session, study.name, app.query_params["participant"])
        with pytest.raises(StudyInputError, match="confidence"):
            submit_response(session, participant, item_key, answer="circles",
                            confidence=confidence, max_length=CONCEPT_MAX_LENGTH)
    assert count_responses(study) == 0


def test_concept_too_long_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["R_l"], n_practice=0, study_type="concept")
    app = start(study)
    item_key = item_key_of(app, "concept-")

    assert app.text_input(key=f"concept-{item_key}").proto.max_chars == CONCEPT_MAX_LENGTH
    with Session(study.engine()) as session:
        participant = resume(session, study.name, app.query_params["participant"])
        with pytest.raises(StudyInputError, match=str(CONCEPT_MAX_LENGTH)):
            submit_response(session, participant, item_key, answer="x" * (CONCEPT_MAX_LENGTH + 1),
                            confidence=3, max_length=CONCEPT_MAX_LENGTH)
    assert count_responses(study) == 0


@pytest.mark.parametrize("concept", ["<script>alert(1)</script>", "**bold**"])
def test_concept_markup_stored_and_shown_plain(monkeypatch, tmp_path, concept):
    study = build_study(monkeypatch, tmp_path, ["R_l+R_g"], n_practice=1, n_counted=1,
                        study_type="concept")
    app = start(study)
    token = app.query_params["participant"]

    item_key = answer_concept(app, concept)

    assert responses_of(study, token)[item_key].answer == concept
    assert app.title[0].value == texts.FEEDBACK_TITLE
    assert app.text.values == [concept]
    for value in markdown_values(app):
        assert concept not in value
        assert "alert(1)" not in value
        assert "bold" not in value


# --------------------------------------------------------------------------------------
# Error studies


@pytest.mark.parametrize("condition", ERROR_CONDITIONS)
def test_error_flow_reaches_completion_code(monkeypatch, tmp_path, condition):
    study = build_study(monkeypatch, tmp_path, [condition], n_practice=1, n_counted=2,
                        study_type="error")
    stages = CONDITION_STAGES["error"][condition]

    app = open_app(study)
    token = app.query_params["participant"]
    assert texts.CONSENT_BY_TYPE["error"] in markdown_text(app)
    accept_consent(app)
    instructions = markdown_text(app)
    assert texts.ERROR_INSTRUCTIONS_TASK in instructions
    for code, label in ERROR_CATEGORIES.items():
        assert f"- **{label}**: {texts.ERROR_CATEGORY_HELP[code]}" in instructions
    for stage, paragraph in texts.STAGE_INSTRUCTIONS.items():
        assert (paragraph in instructions) == (stage in stages), stage
    assert (texts.ERROR_LIVE_INSTRUCTIONS in instructions) == bool(stages)
    assert texts.INSTRUCTIONS_HELPFUL not in instructions
    read_instructions(app)

    chosen = {}
    for number in range(3):
        assert no_exception(app)
        assert views_shown(app) == set(stages)
        live_buttons = [button for button in app.button if button.label == texts.LIVE_BUTTON]
        assert len(live_buttons) == (1 if stages else 0)
        assert not [radio for radio in app.radio if radio.key.startswith("helpful-")]
        item_key = item_key_of(app, "category-")
        answers = study.answer_key[item_key]
        assert texts.ERROR_ANSWERS.format(correct=answers["ground_truth"],
                                          model=answers["prediction"]) in markdown_text(app)
        code = ERROR_CATEGORY_CODES[number]
        answer_error(app, code, confidence=5 - number)
        chosen[item_key] = code
        if item_key in study.practice_keys:
            feedback = texts.ERROR_FEEDBACK.format(category=ERROR_CATEGORIES[code])
            assert feedback in markdown_text(app)
            continue_after_feedback(app, item_key)

    assert app.title[0].value == texts.COMPLETION_TITLE
    participant, assigned = participant_row(study, token)
    assert assigned == condition
    assert participant.completion_code == app.code[0].value
    responses = responses_of(study, token)
    assert {key: response.answer for key, response in responses.items()} == chosen
    assert sorted(response.confidence for response in responses.values()) == [3, 4, 5]


def test_error_answer_requires_category_and_confidence(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["No viz"], n_practice=0, n_counted=2,
                        study_type="error")
    app = start(study)

    # A form keeps its values after a rejected submit, so each step adds one answer.
    answer_error(app, None, confidence=None)
    assert app.warning[0].value == texts.ERROR_CATEGORY_MISSING
    answer_error(app, "interaction", confidence=None)
    assert app.warning[0].value == texts.CONFIDENCE_MISSING
    assert count_responses(study) == 0


def test_resolve_words_finds_every_occurrence():
    tokens = ERROR_DATAPOINTS[1][2]  # what is the color of the triangle ?

    assert live.resolve_words(tokens, "The, TRIANGLE") == ([2, 5, 6], [])
    assert live.resolve_words(tokens, "color purple") == ([3], ["purple"])
    assert live.resolve_words(tokens, "  ") == ([], [])


def test_strongest_regions_sum_cells():
    scores = np.zeros((16, 24))
    scores[0:8, 16:24] = 1.0  # cell (0, 2): sum 64
    scores[8:16, 0:8] = -2.0  # cell (1, 0): sum -128, the largest absolute sum
    scores[8, 8] = 5.0  # cell (1, 1): sum 5
    scores[0, 0], scores[0, 1] = 40.0, -40.0  # cell (0, 0): large values, sum 0

    assert live.strongest_regions(scores, 8, 3) == ((1, 0), (0, 2), (1, 1))


def test_error_tokens_match_built_in_model(real_model):
    test_split = EasyVQA("test")
    for index, question, tokens, _ in ERROR_DATAPOINTS:
        datapoint = test_split.datapoint(index)
        assert datapoint["question"] == question
        assert real_model.encode([datapoint]).atoms["question"][0] == tokens


def test_live_interactions_on_real_model(monkeypatch, tmp_path, real_model):
    study = build_study(monkeypatch, tmp_path, ["MultiViz"], n_practice=1, n_counted=1,
                        study_type="error")
    definition = load_study(study.studies_dir / f"{study.name}.yaml")
    bundle = load_bundle(study.name, study.practice_keys[0])  # what is the red shape ?

    result = live.token_interactions(definition, bundle, [4, 3, 3])

    assert result.token_indices == (3, 4)
    assert result.tokens == ("red", "shape")
    assert result.maps.shape == (2, 64, 64)
    assert len(result.regions) == live.TOP_REGIONS
    datapoint = live.model_context(definition).dataset("test").datapoint(0)
    logits = real_model.forward(real_model.encode([datapoint])).logits[0]
    expected = second_order_gradient(real_model, datapoint, class_target(int(logits.argmax())),
                                     source="question", destination="image", source_atoms=[3, 4])
    np.testing.assert_allclose(result.maps, expected, rtol=1e-5, atol=1e-9)
    assert np.abs(result.maps).max() > 0
    cell_sums = result.maps.sum(axis=0).reshape(8, 8, 8, 8).sum(axis=(1, 3))
    strongest = np.argsort(-np.abs(cell_sums).ravel(), kind="stable")[:3]
    assert [divmod(int(label), 8) for label in strongest] == list(result.regions)


def test_live_request_in_page(monkeypatch, tmp_path, real_model):
    study = build_study(monkeypatch, tmp_path, ["MultiViz"], n_practice=1, n_counted=1,
                        study_type="error")
    app = start(study)
    item_key = item_key_of(app, "category-")

    app.multiselect(key=f"live-words-{item_key}").set_value([3])
    app.text_input(key=f"live-typed-{item_key}").input("shape")
    next(button for button in app.button if button.label == texts.LIVE_BUTTON).click().run()

    assert no_exception(app)
    captions = image_captions(app)
    assert texts.LIVE_WORD_CAPTION.format(token="red") in captions
    assert texts.LIVE_WORD_CAPTION.format(token="shape") in captions
    assert [caption for caption in captions if caption.startswith("Region ")] == [
        texts.LIVE_REGION_CAPTION.format(rank=rank) for rank in (1, 2, 3)]
    assert texts.HOW_TO_READ["C_live"] in app.caption.values
    assert app.session_state[live_request_key(item_key)] == (3, 4)


def test_live_unknown_word_computes_nothing(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["MultiViz"], n_practice=1, n_counted=1,
                        study_type="error")
    app = start(study)
    item_key = item_key_of(app, "category-")

    app.multiselect(key=f"live-words-{item_key}").set_value([3])
    app.text_input(key=f"live-typed-{item_key}").input("red purple")
    next(button for button in app.button if button.label == texts.LIVE_BUTTON).click().run()

    assert texts.LIVE_UNKNOWN_WORD in app.warning.values
    assert live_request_key(item_key) not in app.session_state
    assert not [caption for caption in image_captions(app) if caption.startswith("Region ")]
    assert texts.HOW_TO_READ["C_live"] not in app.caption.values
