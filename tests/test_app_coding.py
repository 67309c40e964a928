"""The Coding tab of the researcher area through AppTest.

Every test runs the real app script on a real SQLite store in ``tmp_path``, with a concept
study from ``app_fixtures`` and two participants whose concept texts are submitted through
the participation functions the participant app uses. Expected alphas come from the
``krippendorff`` package.
"""

from __future__ import annotations

import re

import krippendorff
import numpy as np
import pytest
from app_fixtures import APP_SCRIPT, FixtureStudy, build_study
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from app import coding_page, researcher
from studies.coding import (
    coding_assignments,
    concept_texts,
    initial_assignments,
    list_codings,
    suggest_merges,
    texts_by_category,
)
from studies.definition import load_study
from studies.participation import (
    give_consent,
    join_study,
    next_item,
    record_shown,
    submit_response,
    sync_study,
)
from studies.serve import PASSWORD_VARIABLE

TIMEOUT_S = 60
PASSWORD = "correct horse battery staple"
SCRIPT = "<script>alert(1)</script>"
# Participant -> item -> concept text as typed. Two coders and three features (units).
TEXTS = {
    "first": {"c000": "red color", "c001": "Circle", "c002": "triangle"},
    "second": {"c000": "the colour red", "c001": " circle!", "c002": SCRIPT},
}
# The normalized form of SCRIPT: "(", ")" and "/" are punctuation, "<" and ">" are not.
SCRIPT_CATEGORY = "<script>alert 1 < script>"
MARKDOWN_ELEMENTS = ("markdown", "caption", "error", "warning", "info", "success", "title",
                     "header", "subheader")


@pytest.fixture
def study(monkeypatch: pytest.MonkeyPatch, tmp_path) -> FixtureStudy:
    built = build_study(monkeypatch, tmp_path, ["R_l"], n_practice=0, n_counted=3,
                        participants_per_condition=2, study_type="concept")
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    definition = load_study(str(built.studies_dir / f"{built.name}.yaml"))
    with Session(built.engine()) as session:
        sync_study(session, definition, built.item_keys, built.practice_keys)
        for name, answers in TEXTS.items():
            participant = join_study(session, built.name, external_id=name, random_state=0)
            give_consent(session, participant)
            while (item_key := next_item(session, participant)) is not None:
                record_shown(session, participant, item_key)
                submit_response(session, participant, item_key, answer=answers[item_key],
                                confidence=3, max_length=200)
    return built


def open_area() -> AppTest:
    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    app.query_params["researcher"] = "1"
    app.run()
    app.text_input(key=researcher.PASSWORD_INPUT_KEY).input(PASSWORD)
    [submit] = [button for button in app.button if button.label == researcher.PASSWORD_BUTTON]
    app = submit.click().run()
    assert not app.exception
    return app


def key(name: str, study: FixtureStudy) -> str:
    return f"coding-{name}-{study.name}"


def table_with(app: AppTest, column: str):
    """Return the only data frame on the page that has ``column``."""
    [frame] = [element.value for element in app.dataframe if column in element.value.columns]
    return frame


def markdown_values(app: AppTest) -> list[str]:
    """Return the text of every element that Streamlit renders as Markdown."""
    return [str(element.value) for kind in MARKDOWN_ELEMENTS for element in getattr(app, kind)]


def summary_cell(app: AppTest, column: str) -> str:
    """Return the cell of ``column`` in the one-row summary table of the Summary tab."""
    [table] = [element.value for element in app.markdown
               if element.value.startswith("|") and "alpha" in element.value]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    [row] = lines[2:]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    return cells[header.index(column)]


def expected_alpha(study: FixtureStudy, assignments: dict[int, str]) -> float:
    """Return nominal alpha of the categories, computed by the krippendorff package."""
    with Session(study.engine()) as session:
        texts = concept_texts(session, study.name)
    codes = {category: code for code, category in enumerate(sorted(set(assignments.values())))}
    participants = sorted(texts["participant"].unique())
    reliability = np.full((len(participants), len(study.counted_keys)), np.nan)
    for row in texts.itertuples():
        reliability[participants.index(row.participant), study.counted_keys.index(row.item)] = (
            codes[assignments[row.response_id]])
    return float(krippendorff.alpha(reliability_data=reliability,
                                     level_of_measurement="nominal"))


def saved_versions(study: FixtureStudy) -> list[tuple[int, str, dict[int, str]]]:
    with Session(study.engine()) as session:
        return [(coding.version, coding.note, coding_assignments(session, coding))
                for coding in list_codings(session, study.name)]


def response_id_of(study: FixtureStudy, text: str) -> int:
    with Session(study.engine()) as session:
        texts = concept_texts(session, study.name)
    [response_id] = texts.loc[texts["text"] == text, "response_id"]
    return int(response_id)


def rename_category(app: AppTest, study: FixtureStudy, old: str, new: str) -> AppTest:
    app.selectbox(key=key("rename-old", study)).set_value(old)
    app.text_input(key=key("rename-new", study)).input(new)
    return app.button(key=key("rename-button", study)).click().run()


def merge_categories(app: AppTest, study: FixtureStudy, categories: list[str],
                     into: str) -> AppTest:
    app.multiselect(key=key("merge-categories", study)).set_value(categories)
    app.text_input(key=key("merge-into", study)).input(into)
    return app.button(key=key("merge-button", study)).click().run()


def save(app: AppTest, study: FixtureStudy, note: str) -> AppTest:
    app.text_input(key=key("note", study)).input(note)
    return app.button(key=key("save-button", study)).click().run()


# --------------------------------------------------------------------------------------


def test_coding_tab_lists_every_text_once(study):
    app = open_area()

    assert [tab.label for tab in app.tabs] == [*researcher.TAB_NAMES, researcher.CODING_TAB]
    shown = table_with(app, "text")
    with Session(study.engine()) as session:
        texts = concept_texts(session, study.name)
    assert sorted(shown["response_id"]) == sorted(texts["response_id"])
    assert sorted(shown["text"]) == sorted(text for answers in TEXTS.values()
                                           for text in answers.values())
    expected = initial_assignments(texts)
    for row in shown.itertuples():
        assert row.category == expected[row.response_id]
    # The fixture's feature of item number n is 40 + n.
    assert dict(zip(shown["item"], shown["feature"], strict=True)) == {
        "c000": 40, "c001": 41, "c002": 42}
    assert coding_page.NOT_SAVED in [element.value for element in app.markdown]
    categories = table_with(app, "conditions")
    assert dict(zip(categories["category"], categories["responses"], strict=True))["circle"] == 2


def test_rename_then_merge_saves_two_versions(study):
    app = open_area()
    assert any("No coding of the concept texts is saved yet" in warning.value
               for warning in app.warning)

    app = rename_category(app, study, "circle", "round shape")
    assert not app.error
    app = save(app, study, "renamed circle")

    [(version, note, first)] = saved_versions(study)
    assert (version, note) == (1, "renamed circle")
    assert first[response_id_of(study, "Circle")] == "round shape"
    assert first[response_id_of(study, " circle!")] == "round shape"
    assert first[response_id_of(study, "red color")] == "red color"
    assert "Categories: coding version 1." in [caption.value for caption in app.caption]
    assert "Categories: **coding version 1**." in [element.value for element in app.markdown]
    alpha_first = expected_alpha(study, first)
    assert summary_cell(app, "alpha") == f"{alpha_first:.2f}"

    app = merge_categories(app, study, ["red color", "the colour red"], "red")
    assert "Categories: **coding version 1**, with unsaved changes." in [
        element.value for element in app.markdown]
    app = save(app, study, "merged the reds")

    versions = saved_versions(study)
    assert [(version, note) for version, note, _ in versions] == [
        (1, "renamed circle"), (2, "merged the reds")]
    assert versions[0][2] == first
    second = versions[1][2]
    assert second[response_id_of(study, "red color")] == "red"
    assert second[response_id_of(study, "the colour red")] == "red"
    assert second[response_id_of(study, "Circle")] == "round shape"
    alpha_second = expected_alpha(study, second)
    assert alpha_second != pytest.approx(alpha_first, abs=0.01)
    assert summary_cell(app, "alpha") == f"{alpha_second:.2f}"
    assert "Categories: coding version 2." in [caption.value for caption in app.caption]
    shown_versions = table_with(app, "note")
    assert list(shown_versions["version"]) == [1, 2]
    assert list(shown_versions["note"]) == ["renamed circle", "merged the reds"]
    assert list(shown_versions["categories"]) == [5, 4]


def test_rename_to_existing_category_shows_error(study):
    app = open_area()
    before = table_with(app, "text")

    app = rename_category(app, study, "triangle", "circle")

    [error] = app.error
    assert "exists already" in error.value
    assert "use merge" in error.value
    after = table_with(app, "text")
    assert list(after["category"]) == list(before["category"])


def test_split_moves_chosen_responses(study):
    app = open_area()
    moved = response_id_of(study, " circle!")

    app.selectbox(key=key("split-category", study)).set_value("circle")
    app.run()
    app.multiselect(key=f"{key('split-responses', study)}-circle").set_value([moved])
    app.text_input(key=key("split-into", study)).input("circle with mark")
    app = app.button(key=key("split-button", study)).click().run()

    assert not app.error
    shown = table_with(app, "text").set_index("response_id")
    assert shown.loc[moved, "category"] == "circle with mark"
    assert shown.loc[response_id_of(study, "Circle"), "category"] == "circle"
    assert saved_versions(study) == []

    app = app.button(key=key("discard-button", study)).click().run()
    shown = table_with(app, "text").set_index("response_id")
    assert shown.loc[moved, "category"] == "circle"


def test_script_text_shown_only_as_plain_text(study):
    app = open_area()

    shown = table_with(app, "text")
    assert SCRIPT in set(shown["text"])
    assert SCRIPT_CATEGORY in set(shown["category"])
    assert SCRIPT_CATEGORY in app.selectbox(key=key("rename-old", study)).options
    # A success message repeats the category name, escaped.
    app = merge_categories(app, study, [SCRIPT_CATEGORY, "triangle"], "")
    [success] = app.success
    assert "\\<script\\>alert 1 \\< script\\>" in success.value
    for value in markdown_values(app):
        # Markdown shows a backslash-escaped "<" as the character, never as a tag.
        assert re.search(r"(?<!\\)<", value) is None
        assert "alert(1)" not in value
    assert "<script" not in str([element.value for element in app.text])


def test_suggested_merges_match_encoder(study):
    app = open_area()
    assert not [frame for frame in app.dataframe if "similarity" in frame.value.columns]

    app = app.button(key=key("suggest-button", study)).click().run()

    with Session(study.engine()) as session:
        texts = concept_texts(session, study.name)
    expected = suggest_merges(texts_by_category(texts, initial_assignments(texts)),
                              threshold=coding_page.DEFAULT_THRESHOLD)
    shown = table_with(app, "similarity")
    assert len(shown) == len(expected)
    for row, (first, second, similarity) in zip(shown.itertuples(), expected, strict=True):
        assert {row.category, row._2} == {first, second}
        assert row.similarity == pytest.approx(similarity, abs=1e-6)
    assert {"red color", "the colour red"} in [{row.category, row._2}
                                               for row in shown.itertuples()]

    # A higher threshold filters the cached pairs.
    app.slider(key=key("threshold", study)).set_value(0.99).run()
    shown = [frame.value for frame in app.dataframe if "similarity" in frame.value.columns]
    kept = [pair for pair in expected if pair[2] >= 0.99]
    assert len(kept) < len(expected)
    if kept:
        assert len(shown[0]) == len(kept)
    else:
        assert shown == []
        assert any("0.99 or more" in info.value for info in app.info)


def test_coding_tab_absent_for_simulation_study(monkeypatch, tmp_path):
    build_study(monkeypatch, tmp_path, ["U"], n_practice=1, n_counted=2)
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)

    app = open_area()

    assert [tab.label for tab in app.tabs] == list(researcher.TAB_NAMES)
    assert researcher.CODING_TAB not in [tab.label for tab in app.tabs]
    assert not [button for button in app.button if button.label == "Save coding"]
