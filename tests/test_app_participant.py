"""The participant flow of the Streamlit app, driven through AppTest on real SQLite stores."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from app_fixtures import APP_SCRIPT, FixtureStudy, build_study
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from app import texts
from app.participant import INSTRUCTIONS_READ_KEY
from app.views.interaction import region_token_scores
from studies.definition import CONDITION_STAGES
from studies.store import Condition, Item, Participant, Response

SIMULATION_CONDITIONS = list(CONDITION_STAGES["simulation"])
FEATURE_CONDITIONS = {name for name, stages in CONDITION_STAGES["simulation"].items()
                      if stages & {"R_l", "R_g"}}
TIMEOUT_S = 30


def open_app(study: FixtureStudy, **params: str) -> AppTest:
    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    app.query_params["study"] = study.name
    app.query_params.update(params)
    return app.run()


def markdown_text(app: AppTest) -> str:
    return "\n".join(element.value for element in app.markdown)


def no_exception(app: AppTest) -> bool:
    return len(app.exception) == 0


def accept_consent(app: AppTest) -> None:
    app.checkbox(key="consent-checkbox").check()
    app.button(key="consent-continue").click().run()


def read_instructions(app: AppTest) -> None:
    app.button(key="instructions-continue").click().run()


def current_item(app: AppTest) -> str:
    """Return the item key of the answer form on the page."""
    keys = [radio.key for radio in app.radio if radio.key and radio.key.startswith("answer-")]
    assert len(keys) == 1, f"expected one answer form, found radios {keys}"
    return keys[0].removeprefix("answer-")


def answer_item(app: AppTest, choice_index: int = 0, helpful: str | None = "Features") -> str:
    """Pick a choice and, when asked, the more helpful view, then submit. Return the item key."""
    item_key = current_item(app)
    radio = app.radio(key=f"answer-{item_key}")
    radio.set_value(radio.options[choice_index])
    helpful_radios = [r for r in app.radio if r.key == f"helpful-{item_key}"]
    if helpful_radios and helpful is not None:
        helpful_radios[0].set_value(helpful)
    _submit(app)
    return item_key


def _submit(app: AppTest) -> None:
    submit = [button for button in app.button if button.label == texts.SUBMIT_BUTTON]
    assert len(submit) == 1
    submit[0].click().run()


def continue_after_feedback(app: AppTest, item_key: str) -> None:
    app.button(key=f"feedback-continue-{item_key}").click().run()


def participant_row(study: FixtureStudy, token: str) -> tuple[Participant, str]:
    with Session(study.engine()) as session:
        participant = session.execute(
            select(Participant).where(Participant.token == token)).scalar_one()
        condition = session.get(Condition, participant.condition_id).name
        session.expunge(participant)
    return participant, condition


def responses_of(study: FixtureStudy, token: str) -> dict[str, Response]:
    with Session(study.engine()) as session:
        rows = session.execute(
            select(Item.item_key, Response)
            .join(Response, Response.item_id == Item.id)
            .join(Participant, Participant.id == Response.participant_id)
            .where(Participant.token == token)).all()
        for _, response in rows:
            session.expunge(response)
    return {key: response for key, response in rows}


def views_shown(app: AppTest) -> set[str]:
    """Return the stages whose views appear on an item page, judged by their captions."""
    captions = "\n".join(caption.value for caption in app.caption)
    shown = set()
    if texts.HOW_TO_READ["U_image"] in captions and texts.HOW_TO_READ["U_text"] in captions:
        shown.add("U")
    if texts.HOW_TO_READ["C_token"] in captions and texts.HOW_TO_READ["C_region"] in captions:
        shown.add("C")
    if texts.HOW_TO_READ["R_l"] in captions:
        shown.add("R_l")
    if texts.HOW_TO_READ["R_g"] in captions:
        shown.add("R_g")
    if texts.HOW_TO_READ["P"] in captions:
        shown.add("P")
    return shown


@pytest.mark.parametrize("condition", SIMULATION_CONDITIONS)
def test_flow_reaches_completion_code(monkeypatch, tmp_path, condition):
    study = build_study(monkeypatch, tmp_path, [condition], n_practice=1, n_counted=3)
    stages = CONDITION_STAGES["simulation"][condition]

    app = open_app(study)
    assert no_exception(app)
    token = app.query_params["participant"]
    assert app.title[0].value == texts.CONSENT_TITLE

    accept_consent(app)
    assert app.title[0].value == texts.INSTRUCTIONS_TITLE
    instructions = markdown_text(app)
    for stage, paragraph in texts.STAGE_INSTRUCTIONS.items():
        assert (paragraph in instructions) == (stage in stages), stage
    assert (texts.INSTRUCTIONS_HELPFUL in instructions) == (condition in FEATURE_CONDITIONS)

    read_instructions(app)
    practice_key = answer_item(app)
    assert practice_key == study.practice_keys[0]
    assert app.title[0].value == texts.FEEDBACK_TITLE
    prediction = study.answer_key[practice_key]["prediction"]
    assert f"The model answered **{prediction}**" in markdown_text(app)

    continue_after_feedback(app, practice_key)
    answered = []
    for number in range(len(study.counted_keys)):
        assert views_shown(app) == stages
        tab_labels = [tab.label for tab in app.tabs]
        both_views = bool(stages & {"U", "C"}) and bool(stages & {"R_l", "R_g", "P"})
        assert tab_labels == ([texts.OVERVIEW_TAB, texts.FEATURES_TAB] if both_views else [])
        assert app.progress[0].value == int(100 * number / len(study.counted_keys))
        answered.append(answer_item(app, choice_index=number % 4))
        assert no_exception(app)

    assert sorted(answered) == sorted(study.counted_keys)
    assert app.title[0].value == texts.COMPLETION_TITLE
    shown_code = app.code[0].value
    participant, assigned = participant_row(study, token)
    assert assigned == condition
    assert participant.finished_at is not None
    assert participant.completion_code == shown_code

    responses = responses_of(study, token)
    assert set(responses) == set(study.item_keys)
    for response in responses.values():
        expected_view = "features" if condition in FEATURE_CONDITIONS else None
        assert response.helpful_view == expected_view


def test_resume_lands_on_first_unanswered(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["MultiViz"], n_practice=1, n_counted=3)
    app = open_app(study)
    token = app.query_params["participant"]
    accept_consent(app)
    read_instructions(app)
    practice_key = answer_item(app)
    continue_after_feedback(app, practice_key)
    first_counted = answer_item(app)

    # A new AppTest with emptied caches stands for a restarted server and a reopened
    # tab: only the URL and the response store carry over.
    st.cache_resource.clear()
    st.cache_data.clear()
    resumed = open_app(study, participant=token)
    participant, _ = participant_row(study, token)
    answered = (practice_key, first_counted)
    expected = [key for key in participant.item_order if key not in answered][0]
    assert no_exception(resumed)
    assert current_item(resumed) == expected
    assert resumed.subheader[0].value == texts.ITEM_HEADER.format(number=2, total=3)
    with Session(study.engine()) as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 1


def test_resume_before_consent_shows_consent(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    token = open_app(study).query_params["participant"]

    resumed = open_app(study, participant=token)
    assert resumed.title[0].value == texts.CONSENT_TITLE
    assert resumed.query_params["participant"] == token


def test_consent_requires_checkbox(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    app = open_app(study)
    app.button(key="consent-continue").click().run()

    assert app.warning[0].value == texts.CONSENT_MISSING
    participant, _ = participant_row(study, app.query_params["participant"])
    assert participant.consented_at is None


def test_double_submit_stores_one_row(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"], n_practice=0, n_counted=3)
    first_tab = open_app(study)
    token = first_tab.query_params["participant"]
    accept_consent(first_tab)
    read_instructions(first_tab)

    # A second tab of the same participant shows the same unanswered item.
    second_tab = open_app(study, participant=token)
    second_tab.session_state[INSTRUCTIONS_READ_KEY] = token
    second_tab.run()
    item_key = current_item(first_tab)
    assert current_item(second_tab) == item_key

    answer_item(first_tab, choice_index=0)
    answer_item(second_tab, choice_index=2)

    responses = responses_of(study, token)
    assert len(responses) == 1
    options = sorted(study.bundle_choices[item_key])
    assert responses[item_key].answer == options[0]
    assert current_item(second_tab) != item_key


def test_answer_required_before_submit(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U+C+R_l"], n_practice=0)
    app = open_app(study)
    token = app.query_params["participant"]
    accept_consent(app)
    read_instructions(app)
    item_key = current_item(app)

    _submit(app)
    assert app.warning[0].value == texts.ANSWER_MISSING
    app.radio(key=f"answer-{item_key}").set_value(sorted(study.bundle_choices[item_key])[1])
    _submit(app)
    assert app.warning[0].value == texts.HELPFUL_MISSING
    assert responses_of(study, token) == {}


def test_twenty_one_participants_fill_conditions(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, SIMULATION_CONDITIONS, participants_per_condition=3)
    tokens = {open_app(study).query_params["participant"] for _ in range(21)}
    assert len(tokens) == 21

    with Session(study.engine()) as session:
        counts = dict(session.execute(
            select(Condition.name, func.count(Participant.id))
            .join(Participant, Participant.condition_id == Condition.id)
            .group_by(Condition.name)).all())
    assert counts == {condition: 3 for condition in SIMULATION_CONDITIONS}


def test_external_id_returns_same_participant(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U", "U+C"])
    first = open_app(study, PROLIFIC_PID="panel-member-1").query_params["participant"]
    second = open_app(study, PROLIFIC_PID="panel-member-1").query_params["participant"]
    other = open_app(study, external_id="panel-member-2").query_params["participant"]

    assert first == second
    assert other != first
    participant, _ = participant_row(study, first)
    assert participant.external_id_hash is not None
    assert "panel-member-1" not in participant.external_id_hash


def test_completion_link_carries_code(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"], n_practice=0, n_counted=1,
                        completion_url="https://panel.example/complete?cc=")
    app = open_app(study)
    accept_consent(app)
    read_instructions(app)
    answer_item(app)

    code = app.code[0].value
    links = app.get("link_button")
    assert len(links) == 1
    assert links[0].proto.url == f"https://panel.example/complete?cc={code}"

    # Reopening a finished participation shows the same code again.
    reopened = open_app(study, participant=app.query_params["participant"])
    assert reopened.code[0].value == code


def test_researcher_route_shows_password_gate(monkeypatch, tmp_path):
    build_study(monkeypatch, tmp_path, ["U"])
    page = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    page.query_params["researcher"] = "1"
    page.run()

    assert page.title.values != [texts.CONSENT_TITLE]
    assert len(page.text_input) == 1
    assert page.text_input[0].proto.type == page.text_input[0].proto.PASSWORD


def test_region_scores_layouts_agree():
    grid = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    bundle = {"image": {"array": "image"}}
    rows, columns = np.arange(16)[:, None] // 8, np.arange(24)[None, :] // 8
    arrays = {"image": np.zeros((16, 24, 3)), "grid": grid, "flat": grid.reshape(6, 4),
              "labels": rows * 3 + columns}
    cells = [[row, col] for row in range(2) for col in range(3)]

    by_cell = region_token_scores(bundle, arrays, {"array": "grid", "grid_cell": 8,
                                                   "top_regions": cells})
    by_number = region_token_scores(bundle, arrays, {"array": "flat", "grid_cell": 8,
                                                     "top_regions": cells})
    by_label = region_token_scores(bundle, arrays, {"array": "flat", "regions": "labels",
                                                    "top_regions": list(range(6))})
    for (row, col), cell, number, label in zip(cells, by_cell, by_number, by_label, strict=True):
        expected_mask = (rows == row) & (columns == col)
        for mask, scores in (cell, number, label):
            np.testing.assert_array_equal(mask, expected_mask)
            np.testing.assert_array_equal(scores, grid[row, col])
