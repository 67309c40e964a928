"""Tests of studies.coding: coding versions, the operations on assignments, suggested merges
with the real all-MiniLM-L6-v2, and the analysis of concept and error studies over codings.

Hand-computed alphas use Krippendorff's alpha for nominal data, 1 - D_o / D_e, written with
the coincidence matrix o_ck of the pairable values (o_ck sums, over units u with m_u values,
the ordered pairs of different coders with values c and k, divided by m_u - 1). With
n_c = sum_k o_ck and n = sum_c n_c,

    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k.

With two coders every unit rated by both adds 1 to o_ck and to o_kc for its two values
(o_cc += 2 when they agree), and sum_{c != k} n_c n_k = n^2 - sum_c n_c^2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from studies.analysis import LONG_TABLE_DTYPES, concept_summary, error_summary, load_long_table
from studies.coding import (
    ERROR_CATEGORIES,
    ERROR_CATEGORY_CODES,
    CodedResponse,
    Coding,
    attach_categories,
    coding_assignments,
    concept_texts,
    initial_assignments,
    latest_coding,
    list_codings,
    merge,
    normalize_text,
    rename,
    save_coding,
    split,
    suggest_merges,
    texts_by_category,
)
from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.participation import (
    give_consent,
    join_study,
    next_item,
    record_shown,
    submit_response,
    sync_study,
)
from studies.store import create_store

STUDY = "coding-study"
FEATURES = ["f001", "f002", "f003"]

# Participant -> feature -> concept text as typed. Two coders, three units.
TEXTS = {
    "first": {"f001": "red color", "f002": "Circle", "f003": "triangle"},
    "second": {"f001": "the colour red", "f002": " circle!", "f003": "round shape"},
}


def make_definition(name: str = STUDY, study_type: str = "concept", **changes) -> StudyDefinition:
    data = {
        "name": name,
        "type": study_type,
        "title": "A concept study",
        "dataset": "easy-vqa",
        "model": "easyvqa-minilm-cnn",
        "selection": {"items": len(FEATURES)},
        "conditions": ["R_l"] if study_type == "concept" else None,
        "participants_per_condition": 2,
    }
    data.update(changes)
    return StudyDefinition.model_validate(data)


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MVIZ_ID_SALT", "test-salt")
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def engine(store_url):
    engine = create_store(store_url)
    yield engine
    engine.dispose()


def add_participants(session: Session, definition: StudyDefinition, texts) -> None:
    """Run one participant per entry of ``texts`` through the app's functions."""
    sync_study(session, definition, FEATURES, [])
    for name, answers in texts.items():
        participant = join_study(session, definition.name, external_id=name, random_state=0)
        give_consent(session, participant)
        while (item_key := next_item(session, participant)) is not None:
            record_shown(session, participant, item_key)
            submit_response(session, participant, item_key, answer=answers[item_key],
                            confidence=3, max_length=200)


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        add_participants(session, make_definition(), TEXTS)
        yield session


def response_ids(session: Session) -> dict[tuple[str, str], int]:
    """Return the response id of each (text as typed, feature)."""
    texts = concept_texts(session, STUDY)
    return {(row.text, row.item): int(row.response_id) for row in texts.itertuples()}


def nominal_alpha(session: Session) -> float:
    table, _ = attach_categories(load_long_table(session, STUDY), session, STUDY)
    return float(concept_summary(table, ["R_l"], n_bootstrap=10).loc[0, "alpha"])


# --------------------------------------------------------------------------------------
# Texts and saved versions


def test_concept_texts_match_long_table(session):
    texts = concept_texts(session, STUDY)
    long_table = load_long_table(session, STUDY)

    assert list(texts.columns) == ["response_id", "participant", "condition", "item",
                                   "practice", "text"]
    assert len(texts) == 6
    assert list(texts["item"]) == ["f001", "f001", "f002", "f002", "f003", "f003"]
    assert " circle!" in set(texts["text"])  # stored as typed
    merged = texts.merge(long_table, on=["participant", "item"])
    assert len(merged) == 6
    assert (merged["text"] == merged["answer"]).all()


def test_save_coding_versions_increase(session):
    first = initial_assignments(concept_texts(session, STUDY))
    version_1 = save_coding(session, STUDY, first, note="normalized texts", author="AB")
    second = merge(first, ["red color", "the colour red"], into="red")
    version_2 = save_coding(session, STUDY, second, note="merged the reds")
    version_3 = save_coding(session, STUDY, second)

    assert [version_1.version, version_2.version, version_3.version] == [1, 2, 3]
    assert [coding.version for coding in list_codings(session, STUDY)] == [1, 2, 3]
    assert latest_coding(session, STUDY).id == version_3.id
    assert coding_assignments(session, version_1) == first
    assert coding_assignments(session, version_2) == second
    assert coding_assignments(session, version_3) == second
    assert version_1.note == "normalized texts"
    assert version_1.author == "AB"
    assert version_1.created_at.tzinfo is not None


def test_saved_coding_cannot_change(session):
    coding = save_coding(session, STUDY, initial_assignments(concept_texts(session, STUDY)))
    stored = coding_assignments(session, coding)
    row = session.scalars(select(CodedResponse).where(CodedResponse.coding_id == coding.id)).first()
    row.category = "something else"

    with pytest.raises(StudyInputError, match="cannot change"):
        session.flush()
    session.rollback()
    assert coding_assignments(session, coding) == stored


def test_save_coding_invalid_inputs(engine, session):
    ids = list(response_ids(session).values())

    with pytest.raises(StudyInputError, match="assignments are empty"):
        save_coding(session, STUDY, {})
    with pytest.raises(StudyInputError, match=r"response 9999 is not a response of study"):
        save_coding(session, STUDY, {ids[0]: "red", 9999: "blue"})
    with pytest.raises(StudyInputError, match="invalid category ' '"):
        save_coding(session, STUDY, {ids[0]: " "})
    with pytest.raises(StudyInputError, match="invalid response id 'x'"):
        save_coding(session, STUDY, {"x": "red"})
    with pytest.raises(StudyInputError, match="'missing' is not in the response store"):
        save_coding(session, "missing", {ids[0]: "red"})
    assert list_codings(session, STUDY) == []

    sync_study(session, make_definition("errors", "error"), FEATURES, [])
    with pytest.raises(StudyInputError, match="has type 'error'; only concept studies"):
        latest_coding(session, "errors")


def test_save_coding_creates_missing_tables(engine, session):
    # A store created before studies.coding was imported lacks the coding tables.
    session.close()
    CodedResponse.__table__.drop(engine)
    Coding.__table__.drop(engine)

    with Session(engine) as fresh:
        assert latest_coding(fresh, STUDY) is None
        assert list_codings(fresh, STUDY) == []
        saved = save_coding(fresh, STUDY, initial_assignments(concept_texts(fresh, STUDY)))
        assert saved.version == 1
        assert latest_coding(fresh, STUDY).version == 1


# --------------------------------------------------------------------------------------
# Building and changing assignments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The colour-red!", "the colour red"),
        ("  RED   color ", "red color"),
        ("don't know", "dont know"),
        ("Stra\u00dfe", "strasse"),
        ("?!", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_initial_assignments_normalized():
    texts = {1: "Red color.", 2: "red  COLOR", 3: "...", 4: "the colour red"}

    assert initial_assignments(texts) == {1: "red color", 2: "red color", 4: "the colour red"}


def test_merge_joins_categories():
    assignments = {1: "red", 2: "crimson", 3: "blue", 4: "scarlet"}

    merged = merge(assignments, ["crimson", "scarlet"], into="red")

    assert merged == {1: "red", 2: "red", 3: "blue", 4: "red"}
    assert assignments == {1: "red", 2: "crimson", 3: "blue", 4: "scarlet"}
    assert merge(assignments, ["red", "crimson"], into=" reds ") == {
        1: "reds", 2: "reds", 3: "blue", 4: "scarlet"}
    with pytest.raises(StudyInputError, match="category 'green' is not in the assignments"):
        merge(assignments, ["red", "green"], into="red")
    with pytest.raises(StudyInputError, match="one or more categories"):
        merge(assignments, [], into="red")


def test_split_moves_listed_responses():
    assignments = {1: "shape", 2: "shape", 3: "shape", 4: "blue"}

    result = split(assignments, "shape", [2, 3], "circle")

    assert result == {1: "shape", 2: "circle", 3: "circle", 4: "blue"}
    assert assignments[2] == "shape"
    assert split(assignments, "shape", [1], "blue") == {1: "blue", 2: "shape", 3: "shape",
                                                        4: "blue"}
    with pytest.raises(StudyInputError, match="response 4 is not in category 'shape'"):
        split(assignments, "shape", [1, 4], "circle")
    with pytest.raises(StudyInputError, match="no response ids"):
        split(assignments, "shape", [], "circle")
    with pytest.raises(StudyInputError, match="is the category being split"):
        split(assignments, "shape", [1], "shape")


def test_rename_category():
    assignments = {1: "redd", 2: "redd", 3: "blue"}

    assert rename(assignments, "redd", "red") == {1: "red", 2: "red", 3: "blue"}
    assert assignments == {1: "redd", 2: "redd", 3: "blue"}
    with pytest.raises(StudyInputError, match="'blue' exists already; use merge"):
        rename(assignments, "redd", "blue")
    with pytest.raises(StudyInputError, match="category 'green' is not in the assignments"):
        rename(assignments, "green", "red")


def test_texts_by_category_groups_texts():
    texts = {1: "Red", 2: "red!", 3: "blue"}

    grouped = texts_by_category(texts, {1: "red", 2: "red", 3: "blue"})

    assert grouped == {"red": ["Red", "red!"], "blue": ["blue"]}


# --------------------------------------------------------------------------------------
# Analysis over codings


def test_coding_change_changes_alpha(session):
    assignments = initial_assignments(concept_texts(session, STUDY))
    assert sorted(set(assignments.values())) == [
        "circle", "red color", "round shape", "the colour red", "triangle"]

    # Version 1, units f001 = (red color, the colour red), f002 = (circle, circle),
    # f003 = (triangle, round shape): n = 6, n_c = 1, 1, 2, 1, 1, so
    # sum_{c != k} n_c n_k = 36 - 8 = 28; off-diagonal o_ck sum to 4 (f001 and f003), and
    # alpha = 1 - 5 * 4 / 28 = 2 / 7.
    save_coding(session, STUDY, assignments)
    assert nominal_alpha(session) == pytest.approx(2 / 7)

    # Version 2 merges the reds: n_c = 2, 2, 1, 1, so sum n_c n_k = 36 - 10 = 26; only f003
    # disagrees (off-diagonal sum 2), and alpha = 1 - 5 * 2 / 26 = 8 / 13.
    merged = merge(assignments, ["red color", "the colour red"], into="red")
    save_coding(session, STUDY, merged)
    assert nominal_alpha(session) == pytest.approx(8 / 13)

    # Renaming a category leaves alpha unchanged.
    save_coding(session, STUDY, rename(merged, "red", "colour: red"))
    assert nominal_alpha(session) == pytest.approx(8 / 13)


def test_full_agreement_counts_features(session):
    assignments = initial_assignments(concept_texts(session, STUDY))
    save_coding(session, STUDY, assignments)
    table, _ = attach_categories(load_long_table(session, STUDY), session, STUDY)
    before = concept_summary(table, ["R_l"], n_bootstrap=10).loc[0, "units_full_agreement"]

    save_coding(session, STUDY, merge(assignments, ["red color", "the colour red"], into="red"))
    table, _ = attach_categories(load_long_table(session, STUDY), session, STUDY)
    after = concept_summary(table, ["R_l"], n_bootstrap=10).loc[0, "units_full_agreement"]

    assert before == 1  # f002
    assert after == 2  # f001 and f002; f003 still differs


def test_attach_categories_version_and_uncoded(session):
    long_table = load_long_table(session, STUDY)

    table, version = attach_categories(long_table, session, STUDY)
    assert version is None
    assert table["category"].isna().all()
    assert "category" not in long_table.columns

    ids = response_ids(session)
    save_coding(session, STUDY, {ids[("red color", "f001")]: "red"})
    save_coding(session, STUDY, {ids[("red color", "f001")]: "red",
                                 ids[("the colour red", "f001")]: "red"})
    table, version = attach_categories(long_table, session, STUDY)

    assert version == 2
    assert table["category"].notna().sum() == 2
    assert set(table.loc[table["item"] == "f001", "category"]) == {"red"}
    assert table.loc[table["item"] != "f001", "category"].isna().all()


def test_command_analyze_names_coding_version(session, store_url, tmp_path, capsys):
    from studies.commands_analysis import command_analyze, load_study_tables

    study_file = tmp_path / "coding-study.yaml"
    study_file.write_text(make_definition().model_dump_json())  # JSON is valid YAML

    command_analyze(str(study_file), store_url)
    assert "categories: no coding saved yet" in capsys.readouterr().out

    assignments = initial_assignments(concept_texts(session, STUDY))
    save_coding(session, STUDY, assignments)
    save_coding(session, STUDY, merge(assignments, ["red color", "the colour red"], into="red"))
    tables = load_study_tables(str(study_file), store_url)
    command_analyze(str(study_file), store_url)

    assert "categories: coding version 2" in capsys.readouterr().out
    assert tables.summary.loc[0, "coding_version"] == 2
    assert tables.summary.loc[0, "alpha"] == pytest.approx(8 / 13)
    assert tables.long_table["category"].notna().all()


# --------------------------------------------------------------------------------------
# Suggested merges (real all-MiniLM-L6-v2)


def test_suggest_merges_ranks_paraphrase():
    categories = {"red color": ["red color"], "the colour red": ["the colour red"],
                  "triangle shape": ["triangle shape"]}

    pairs = suggest_merges(categories, threshold=-1.0)
    similarity = {(a, b): value for a, b, value in pairs}

    assert len(pairs) == 3
    assert [value for _, _, value in pairs] == sorted((v for _, _, v in pairs), reverse=True)
    assert pairs[0][:2] == ("red color", "the colour red")
    assert similarity[("red color", "the colour red")] > similarity[("red color", "triangle shape")]
    assert suggest_merges(categories, threshold=0.8) == [pairs[0]]


def test_suggest_merges_mean_of_texts():
    # A category's vector is the mean of its texts' vectors, so repeating a text or
    # encoding one text per batch changes nothing.
    once = suggest_merges({"a": ["red color", "circle"], "b": ["the colour red"]}, -1.0)
    twice = suggest_merges({"a": ["red color", "circle", "circle", "red color"],
                            "b": ["the colour red"]}, -1.0, batch_size=1)

    assert once[0][2] == pytest.approx(twice[0][2], abs=1e-5)
    assert suggest_merges({"only": ["red"]}) == []
    with pytest.raises(StudyInputError, match="invalid threshold 1.5"):
        suggest_merges({"a": ["x"], "b": ["y"]}, threshold=1.5)


# --------------------------------------------------------------------------------------
# Error studies


def long_row(participant, condition, item, answer, confidence):
    row = {column: None for column in LONG_TABLE_DTYPES}
    row.update(participant=participant, condition=condition, item=item, practice=False,
               answer=answer, confidence=confidence, response_seconds=1.0, simulated=False,
               finished=True)
    return row


def test_error_categories_defined_once():
    assert ERROR_CATEGORY_CODES == ("unimodal", "interaction", "prediction")
    assert ERROR_CATEGORIES["interaction"] == "Cross-modal interaction error"


def test_error_summary_by_hand():
    choices = {  # participant -> item -> (category, confidence)
        "p001": {"q1": ("unimodal", 5), "q2": ("interaction", 4), "q3": ("prediction", 3)},
        "p002": {"q1": ("unimodal", 4), "q2": ("interaction", 4), "q3": ("interaction", 2)},
    }
    rows = [long_row(p, "MultiViz", item, category, confidence)
            for p, answers in choices.items() for item, (category, confidence) in answers.items()]
    rows.append({**long_row("p001", "MultiViz", "q0", "prediction", 1), "practice": True})
    table = pd.DataFrame(rows)[list(LONG_TABLE_DTYPES)].astype(LONG_TABLE_DTYPES)

    summary = error_summary(table, ["No viz", "MultiViz"], categories=ERROR_CATEGORY_CODES,
                            n_bootstrap=20)
    row = summary.iloc[1]

    # Units q1 = (U, U), q2 = (I, I), q3 = (P, I): n = 6, n_U = 2, n_I = 3, n_P = 1, so
    # sum_{c != k} n_c n_k = 36 - 14 = 22, the off-diagonal o_ck sum to 2, and
    # alpha = 1 - 5 * 2 / 22 = 6 / 11.
    assert row["alpha"] == pytest.approx(6 / 11)
    # Confidence over the six counted responses 5, 4, 3, 4, 4, 2: mean 22 / 6, and the sum
    # of squared deviations 16 / 3 over n - 1 = 5 gives the variance 16 / 15.
    assert row["confidence_mean"] == pytest.approx(22 / 6)
    assert row["confidence_std"] == pytest.approx(math.sqrt(16 / 15))
    # Items per participant and category: unimodal 1 and 1, interaction 1 and 2,
    # prediction 1 and 0 (the practice item does not count).
    assert row["count_unimodal_mean"] == pytest.approx(1.0)
    assert row["count_unimodal_std"] == pytest.approx(0.0)
    assert row["count_interaction_mean"] == pytest.approx(1.5)
    assert row["count_interaction_std"] == pytest.approx(math.sqrt(0.5))
    assert row["count_prediction_mean"] == pytest.approx(0.5)
    assert row["count_prediction_std"] == pytest.approx(math.sqrt(0.5))
    assert np.isnan(summary.iloc[0]["alpha"])


def test_summarize_error_study_lists_every_category():
    from studies.commands_analysis import summarize

    rows = [long_row(p, "No viz", item, "unimodal", 3) for p in ("p001", "p002")
            for item in ("q1", "q2")]
    table = pd.DataFrame(rows)[list(LONG_TABLE_DTYPES)].astype(LONG_TABLE_DTYPES)

    summary = summarize(make_definition("errors", "error"), table)

    assert summary.loc[0, "count_unimodal_mean"] == pytest.approx(2.0)
    assert summary.loc[0, "count_interaction_mean"] == pytest.approx(0.0)
    assert summary.loc[0, "count_prediction_mean"] == pytest.approx(0.0)
