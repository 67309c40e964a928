"""Tests of studies.analysis and the ``mviz analyze`` command: known answers only.

The agreement reference is the example of Krippendorff (2011), "Computing Krippendorff's
Alpha-Reliability": 4 coders, 12 units, values 1-5 with missing values, whose published alphas
are 0.743 (nominal), 0.815 (ordinal), 0.849 (interval) and 0.797 (ratio).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from studies.analysis import (
    LONG_TABLE_DTYPES,
    bootstrap_alpha,
    concept_summary,
    empty_long_table,
    error_summary,
    krippendorff_alpha,
    load_answer_key,
    mean_interval,
    reliability_matrix,
    simulation_summary,
)
from studies.errors import StudyInputError

NAN = math.nan

# Krippendorff (2011): rows are coders A-D, columns units 1-12, NaN where a coder gave no value.
REFERENCE_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
REFERENCE_ALPHA = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
ORDINAL_LABELS = ["very low", "low", "mid", "high", "very high"]


def make_row(participant, condition, item, answer, **values):
    """Return one long-table row; unspecified columns get neutral values."""
    row = {
        "participant": participant, "condition": condition, "item": item, "practice": False,
        "answer": answer, "prediction": None, "ground_truth": None, "correct": None,
        "model_correct": None, "response_seconds": 1.0, "helpful_view": None,
        "confidence": None, "simulated": False, "finished": True,
    }
    row.update(values)
    return row


def make_table(rows) -> pd.DataFrame:
    extra = [c for c in pd.DataFrame(rows).columns if c not in LONG_TABLE_DTYPES]
    return pd.DataFrame(rows)[list(LONG_TABLE_DTYPES) + extra].astype(LONG_TABLE_DTYPES)


def reference_rows(labels=None):
    rows = []
    for coder, values in enumerate(REFERENCE_DATA):
        for unit, value in enumerate(values):
            if not math.isnan(value):
                answer = labels[int(value) - 1] if labels else str(int(value))
                rows.append(make_row(f"p{coder + 1:03d}", "U", f"q{unit + 1:02d}", answer))
    return rows


def simulation_row(participant, condition, item, answer, prediction, model_correct, **values):
    return make_row(participant, condition, item, answer, prediction=prediction,
                    ground_truth=prediction if model_correct else "other",
                    correct=answer == prediction, model_correct=model_correct, **values)


# --------------------------------------------------------------------------------------
# Krippendorff's alpha


def test_package_reproduces_reference_example():
    import krippendorff

    for level, published in REFERENCE_ALPHA.items():
        value = krippendorff.alpha(np.array(REFERENCE_DATA), level_of_measurement=level)
        assert value == pytest.approx(published, abs=5e-4), level


@pytest.mark.parametrize("level", list(REFERENCE_ALPHA))
def test_alpha_reference_from_long_table(level):
    matrix = reliability_matrix(make_table(reference_rows()), "answer", numeric=True)
    result = krippendorff_alpha(matrix, level)
    assert result.value == pytest.approx(REFERENCE_ALPHA[level], abs=5e-4)
    assert result.note == ""


def test_reliability_matrix_layout():
    matrix = reliability_matrix(make_table(reference_rows()), "answer", numeric=True)
    assert matrix.data.shape == (4, 12)
    assert matrix.coders == ("p001", "p002", "p003", "p004")
    assert matrix.units == tuple(f"q{u:02d}" for u in range(1, 13))
    np.testing.assert_array_equal(matrix.data, np.array(REFERENCE_DATA))
    np.testing.assert_array_equal(matrix.value_domain, [1, 2, 3, 4, 5])


def test_alpha_ordinal_labels_with_value_order():
    table = make_table(reference_rows(ORDINAL_LABELS))
    ordered = reliability_matrix(table, "answer", value_order=ORDINAL_LABELS)
    assert krippendorff_alpha(ordered, "ordinal").value == pytest.approx(0.815, abs=5e-4)
    # Nominal alpha does not depend on the order of the codes.
    alphabetical = reliability_matrix(table, "answer")
    assert krippendorff_alpha(alphabetical, "nominal").value == pytest.approx(0.743, abs=5e-4)


def test_alpha_perfect_agreement_is_one():
    rows = [make_row(p, "U", item, answer) for p in ("p001", "p002", "p003")
            for item, answer in (("q1", "red"), ("q2", "blue"), ("q3", "red"))]
    result = krippendorff_alpha(reliability_matrix(make_table(rows), "answer"))
    assert result.value == pytest.approx(1.0)


def test_alpha_undefined_one_participant():
    rows = [make_row("p001", "U", f"q{i}", answer) for i, answer in enumerate("abab")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = krippendorff_alpha(reliability_matrix(make_table(rows), "answer"))
    assert math.isnan(result.value)
    assert result.note == "undefined: only one participant"


def test_alpha_undefined_no_shared_item():
    rows = [make_row("p001", "U", "q1", "a"), make_row("p001", "U", "q2", "b"),
            make_row("p002", "U", "q3", "a"), make_row("p002", "U", "q4", "b")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = krippendorff_alpha(reliability_matrix(make_table(rows), "answer"))
    assert math.isnan(result.value)
    assert result.note == "undefined: no item was answered by two or more participants"


def test_alpha_undefined_single_pairable_value():
    # "b" occurs only on q3, which one participant answered, so pairable values are all "a"
    # and the expected disagreement is zero even though the domain has two values.
    rows = [make_row("p001", "U", "q1", "a"), make_row("p002", "U", "q1", "a"),
            make_row("p001", "U", "q2", "a"), make_row("p002", "U", "q2", "a"),
            make_row("p001", "U", "q3", "b")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = krippendorff_alpha(reliability_matrix(make_table(rows), "answer"))
    assert math.isnan(result.value)
    assert result.note.startswith("undefined: every answer on items with two or more participants")


def test_alpha_undefined_no_responses():
    result = krippendorff_alpha(reliability_matrix(empty_long_table(), "answer"))
    assert math.isnan(result.value)
    assert result.note == "undefined: no responses"


def test_alpha_rejects_unknown_level():
    with pytest.raises(StudyInputError, match="'cardinal'.*nominal, ordinal, interval, ratio"):
        krippendorff_alpha(np.array(REFERENCE_DATA), "cardinal")


def test_alpha_rejects_value_outside_domain():
    with pytest.raises(StudyInputError, match="value 5, which is not in the value domain"):
        krippendorff_alpha(np.array(REFERENCE_DATA), "nominal", value_domain=[1, 2, 3, 4])


def test_reliability_matrix_rejects_duplicate_response():
    rows = [make_row("p001", "U", "q1", "a"), make_row("p001", "U", "q1", "b")]
    with pytest.raises(StudyInputError, match="'p001' has more than one response to item 'q1'"):
        reliability_matrix(make_table(rows), "answer")


def test_reliability_matrix_rejects_non_numeric():
    rows = [make_row("p001", "U", "q1", "3"), make_row("p002", "U", "q1", "high")]
    with pytest.raises(StudyInputError, match="non-numeric value 'high'"):
        reliability_matrix(make_table(rows), "answer", numeric=True)


def test_bootstrap_perfect_agreement_counts_skips():
    # Two units with two values: a resample that draws the same unit twice has one value, so
    # alpha is undefined there (probability 1/2); every other resample has alpha = 1.
    rows = [make_row(p, "U", item, answer) for p in ("p001", "p002")
            for item, answer in (("q1", "a"), ("q2", "b"))]
    matrix = reliability_matrix(make_table(rows), "answer")
    interval = bootstrap_alpha(matrix, n_bootstrap=1000, random_state=3)
    assert interval.low == pytest.approx(1.0)
    assert interval.high == pytest.approx(1.0)
    assert interval.n_bootstrap == 1000
    # Binomial(1000, 1/2) has standard deviation 15.8, so these bounds are over 6 deviations away.
    assert 400 < interval.n_skipped < 600


def test_bootstrap_same_seed_same_interval():
    matrix = reliability_matrix(make_table(reference_rows()), "answer", numeric=True)
    first = bootstrap_alpha(matrix, "interval", n_bootstrap=200, random_state=11)
    second = bootstrap_alpha(matrix, "interval", n_bootstrap=200, random_state=11)
    assert first == second
    assert first.low <= REFERENCE_ALPHA["interval"] <= first.high


# --------------------------------------------------------------------------------------
# Correctness


def test_mean_interval_closed_form():
    mean, std, low, high = mean_interval([0.75, 0.5, 1.0])
    # t quantile for 2 degrees of freedom in closed form: (2p - 1) * sqrt(2 / (4 p (1 - p))).
    t_975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    assert mean == pytest.approx(0.75)
    assert std == pytest.approx(0.25)
    assert low == pytest.approx(0.75 - t_975 * 0.25 / math.sqrt(3))
    assert high == pytest.approx(0.75 + t_975 * 0.25 / math.sqrt(3))


def test_mean_interval_one_value():
    mean, std, low, high = mean_interval([0.4])
    assert mean == pytest.approx(0.4)
    assert math.isnan(std)
    assert math.isnan(low)
    assert math.isnan(high)


def hand_made_simulation_rows(practice_answer="x"):
    """Three participants in U on items q1-q4 (the model is right on q1, q2 and wrong on q3, q4),
    one in MultiViz, and two practice items each that every participant answers the same way."""
    predictions = {"q1": "red", "q2": "circle", "q3": "blue", "q4": "2"}
    model_right = {"q1": True, "q2": True, "q3": False, "q4": False}
    answers = {
        "p001": {"q1": "red", "q2": "circle", "q3": "blue", "q4": "3"},     # 3 of 4
        "p002": {"q1": "red", "q2": "square", "q3": "green", "q4": "2"},    # 2 of 4
        "p003": {"q1": "red", "q2": "circle", "q3": "blue", "q4": "2"},     # 4 of 4
    }
    rows = []
    for participant, given in answers.items():
        for item in ("s1", "s2"):
            rows.append(simulation_row(participant, "U", item, practice_answer, "red", True, practice=True))
        for item, answer in given.items():
            rows.append(simulation_row(participant, "U", item, answer, predictions[item], model_right[item]))
    views = ["features", "features", "overview", "features"]
    for item, view in zip(predictions, views, strict=True):
        rows.append(simulation_row("p004", "MultiViz", item, predictions[item], predictions[item],
                                   model_right[item], helpful_view=view, simulated=True))
    rows.append(simulation_row("p004", "MultiViz", "s1", "red", "red", True, practice=True,
                               helpful_view="overview", simulated=True))
    return rows


def test_simulation_summary_correctness_by_hand():
    summary = simulation_summary(make_table(hand_made_simulation_rows()), ["U", "U+C", "MultiViz"],
                                 feature_conditions={"MultiViz"}, n_bootstrap=50)
    assert list(summary["condition"]) == ["U", "U+C", "MultiViz"]
    u = summary.iloc[0]
    # Per participant: 3/4, 2/4, 4/4.
    t_975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    assert u["participants"] == 3
    assert u["counted_items"] == 4
    assert u["responses"] == 12
    assert u["correctness_mean"] == pytest.approx(0.75)
    assert u["correctness_std"] == pytest.approx(math.sqrt((0.0 ** 2 + 0.25 ** 2 + 0.25 ** 2) / 2))
    assert u["correctness_ci_low"] == pytest.approx(0.75 - t_975 * 0.25 / math.sqrt(3))
    assert u["correctness_ci_high"] == pytest.approx(0.75 + t_975 * 0.25 / math.sqrt(3))
    # On q1, q2 (model right): 2/2, 1/2, 2/2; on q3, q4 (model wrong): 1/2, 1/2, 2/2.
    assert u["correctness_model_right"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert u["correctness_model_wrong"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert math.isnan(u["features_helped_share"])
    assert u["simulated_participants"] == 0


def test_simulation_summary_alpha_matches_package():
    import krippendorff

    summary = simulation_summary(make_table(hand_made_simulation_rows()), ["U"], n_bootstrap=50)
    # Answers coded in sorted order of the observed values: 2, 3, blue, circle, green, red, square.
    codes = {"2": 0, "3": 1, "blue": 2, "circle": 3, "green": 4, "red": 5, "square": 6}
    data = [[codes[a] for a in ("red", "circle", "blue", "3")],
            [codes[a] for a in ("red", "square", "green", "2")],
            [codes[a] for a in ("red", "circle", "blue", "2")]]
    expected = krippendorff.alpha(data, level_of_measurement="nominal")
    assert summary.loc[0, "alpha"] == pytest.approx(expected)
    assert pd.isna(summary.loc[0, "alpha_note"])
    assert summary.loc[0, "alpha_ci_low"] <= summary.loc[0, "alpha_ci_high"]


def test_simulation_summary_features_share_and_empty_condition():
    summary = simulation_summary(make_table(hand_made_simulation_rows()), ["U", "U+C", "MultiViz"],
                                 feature_conditions={"MultiViz"}, n_bootstrap=50)
    empty, multiviz = summary.iloc[1], summary.iloc[2]
    assert multiviz["features_helped_share"] == pytest.approx(0.75)
    assert multiviz["simulated_participants"] == 1
    assert multiviz["alpha_note"] == "undefined: only one participant"
    assert math.isnan(multiviz["alpha"])
    assert math.isnan(multiviz["correctness_std"])
    assert empty["participants"] == 0
    assert math.isnan(empty["correctness_mean"])
    assert math.isnan(empty["alpha"])
    assert empty["note"] == "no responses in this condition"


def test_simulation_summary_feature_conditions_default():
    summary = simulation_summary(make_table(hand_made_simulation_rows()), ["U", "MultiViz"], n_bootstrap=10)
    assert math.isnan(summary.loc[0, "features_helped_share"])
    assert summary.loc[1, "features_helped_share"] == pytest.approx(0.75)


def test_practice_items_never_count():
    all_wrong = simulation_summary(make_table(hand_made_simulation_rows("x")), ["U"], n_bootstrap=50)
    all_right = simulation_summary(make_table(hand_made_simulation_rows("red")), ["U"], n_bootstrap=50)
    pd.testing.assert_frame_equal(all_wrong, all_right)
    matrix = reliability_matrix(make_table(hand_made_simulation_rows()), "answer")
    assert "s1" not in matrix.units
    assert "s2" not in matrix.units


def test_simulation_summary_unlisted_condition_last():
    rows = hand_made_simulation_rows()
    summary = simulation_summary(make_table(rows), ["MultiViz"], n_bootstrap=10)
    assert list(summary["condition"]) == ["MultiViz", "U"]
    assert summary.loc[1, "note"] == "condition not in the study definition"
    assert summary.loc[1, "correctness_mean"] == pytest.approx(0.75)


# --------------------------------------------------------------------------------------
# Concept and error studies


def test_concept_summary_by_hand():
    categories = {  # participant -> feature -> coded category
        "p001": {"f1": "color", "f2": "shape", "f3": "color"},
        "p002": {"f1": "color", "f2": "shape", "f3": "size"},
        "p003": {"f1": "color", "f2": "shape"},
    }
    confidence = {"p001": 4, "p002": 2, "p003": 3}
    rows = [make_row(p, "R_l", f, f"text {c}", category=c, confidence=confidence[p])
            for p, coded in categories.items() for f, c in coded.items()]
    rows.append(make_row("p003", "R_l", "f4", "uncoded text", category=None, confidence=5))
    summary = concept_summary(make_table(rows), ["R_l", "R_l+R_g"], n_bootstrap=50)
    row = summary.iloc[0]
    assert row["responses"] == 9
    assert row["coded_responses"] == 8
    assert row["units_full_agreement"] == 2  # f1 and f2; f3 differs, f4 has one response
    confidences = [4, 4, 4, 2, 2, 2, 3, 3, 5]
    assert row["confidence_mean"] == pytest.approx(np.mean(confidences))
    assert row["confidence_std"] == pytest.approx(np.std(confidences, ddof=1))
    assert pd.isna(row["alpha_note"])
    assert summary.iloc[1]["note"] == "no responses in this condition"


def test_concept_summary_without_coding():
    rows = [make_row(p, "R_l", "f1", "a text", confidence=3) for p in ("p001", "p002")]
    summary = concept_summary(make_table(rows), ["R_l"], n_bootstrap=10)
    assert math.isnan(summary.loc[0, "alpha"])
    assert summary.loc[0, "alpha_note"] == "undefined: no response has a coded category yet"


def test_error_summary_counts_by_hand():
    choices = {
        "p001": ["unimodal perception", "unimodal perception", "prediction"],
        "p002": ["cross-modal interaction", "unimodal perception", "prediction"],
    }
    rows = [make_row(p, "MultiViz", f"q{i}", c, confidence=i + 1)
            for p, chosen in choices.items() for i, c in enumerate(chosen)]
    categories = ["unimodal perception", "cross-modal interaction", "prediction"]
    summary = error_summary(make_table(rows), ["No viz", "MultiViz"], categories=categories, n_bootstrap=50)
    row = summary.iloc[1]
    assert row["count_unimodal_perception_mean"] == pytest.approx(1.5)
    assert row["count_unimodal_perception_std"] == pytest.approx(math.sqrt(0.5))
    assert row["count_cross_modal_interaction_mean"] == pytest.approx(0.5)
    assert row["count_prediction_mean"] == pytest.approx(1.0)
    assert row["count_prediction_std"] == pytest.approx(0.0)
    assert row["confidence_mean"] == pytest.approx(2.0)
    assert row["confidence_std"] == pytest.approx(np.std([1, 2, 3, 1, 2, 3], ddof=1))
    assert summary.iloc[0]["note"] == "no responses in this condition"


# --------------------------------------------------------------------------------------
# Answer key


def test_load_answer_key_rejects_other_study(tmp_path):
    path = tmp_path / "answer_key.json"
    path.write_text('{"study": "other", "items": {"q1": {"prediction": "a", "ground_truth": "a"}}}')
    with pytest.raises(StudyInputError, match="belongs to study 'other', not 'mine'"):
        load_answer_key(path, "mine")


def test_load_answer_key_rejects_incomplete_item():
    with pytest.raises(StudyInputError, match="item 'q1' needs 'prediction' and 'ground_truth'"):
        load_answer_key({"study": "s", "items": {"q1": {"prediction": "a"}}})


# --------------------------------------------------------------------------------------
# Through a real SQLite store: load_long_table and the commands


def write_store(url, study_name, study_type, conditions, responses, practice_items=()):
    """Write a study and its responses into the store at ``url`` with the store's models.

    ``responses`` contains ``(participant, condition, item, answer, extra)`` tuples, where
    ``extra`` may set helpful_view, confidence, seconds and simulated. Participants are
    created in order of first appearance, so their database ids (and long-table ids
    p001, p002, ...) follow that order. Returns the participants' tokens.
    """
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from studies.store import Condition, Item, Participant, Response, Study, create_store, utc_now

    engine = create_store(url)
    tokens = []
    with Session(engine) as session:
        study = Study(name=study_name, type=study_type, title="A test study")
        session.add(study)
        session.flush()
        condition_ids = {}
        for position, name in enumerate(conditions):
            condition = Condition(study_id=study.id, name=name, position=position)
            session.add(condition)
            session.flush()
            condition_ids[name] = condition.id

        item_keys = list(dict.fromkeys([*practice_items, *(r[2] for r in responses)]))
        item_ids = {}
        for position, key in enumerate(item_keys):
            item = Item(study_id=study.id, item_key=key, practice=key in practice_items, position=position)
            session.add(item)
            session.flush()
            item_ids[key] = item.id

        participants = {}
        start = utc_now()
        for name, condition, item, answer, extra in responses:
            if name not in participants:
                participant = Participant(study_id=study.id, condition_id=condition_ids[condition],
                                          item_order=item_keys, simulated=extra.get("simulated", False),
                                          finished_at=start)
                session.add(participant)
                session.flush()
                participants[name] = participant
                tokens.append(participant.token)
            session.add(Response(
                participant_id=participants[name].id, item_id=item_ids[item], answer=answer,
                helpful_view=extra.get("helpful_view"), confidence=extra.get("confidence"),
                shown_at=start, answered_at=start + timedelta(seconds=extra.get("seconds", 2.5)),
            ))
        session.commit()
    engine.dispose()
    return tokens


def reference_responses():
    """The reference example as responses in condition U, after two practice items each."""
    responses = []
    for coder, values in enumerate(REFERENCE_DATA):
        name = f"coder{coder}"
        for practice in ("s1", "s2"):
            responses.append((name, "U", practice, "5", {}))
        for unit, value in enumerate(values):
            if not math.isnan(value):
                responses.append((name, "U", f"q{unit + 1:02d}", str(int(value)), {"seconds": 1.5 + unit}))
    return responses


REFERENCE_KEY = {"study": "reference", "items": {
    **{f"q{u:02d}": {"prediction": "2", "ground_truth": "2" if u % 2 else "3", "model_correct": bool(u % 2)}
       for u in range(1, 13)},
    "s1": {"prediction": "5", "ground_truth": "5", "model_correct": True},
    "s2": {"prediction": "1", "ground_truth": "1", "model_correct": True},
}}


@pytest.fixture
def reference_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    tokens = write_store(url, "reference", "simulation", ["U", "U+C"], reference_responses(),
                         practice_items=("s1", "s2"))
    return url, tokens


def load_from_store(url, study_name, answer_key):
    from sqlalchemy.orm import Session

    from studies.analysis import load_long_table
    from studies.store import create_store

    engine = create_store(url)
    try:
        with Session(engine) as session:
            return load_long_table(session, study_name, answer_key)
    finally:
        engine.dispose()


@pytest.mark.parametrize("level", list(REFERENCE_ALPHA))
def test_alpha_reference_through_store(reference_store, level):
    url, _ = reference_store
    table = load_from_store(url, "reference", REFERENCE_KEY)
    matrix = reliability_matrix(table, "answer", numeric=True)
    assert matrix.data.shape == (4, 12)
    result = krippendorff_alpha(matrix, level)
    assert result.value == pytest.approx(REFERENCE_ALPHA[level], abs=5e-4)


def test_load_long_table_columns_and_values(reference_store):
    url, tokens = reference_store
    table = load_from_store(url, "reference", REFERENCE_KEY)
    assert list(table.columns) == list(LONG_TABLE_DTYPES)
    assert {c: str(t) for c, t in table.dtypes.items()} == LONG_TABLE_DTYPES
    n_values = sum(not math.isnan(v) for row in REFERENCE_DATA for v in row)
    assert len(table) == n_values + 4 * 2
    assert int(table["practice"].sum()) == 8
    assert sorted(table["participant"].unique()) == ["p001", "p002", "p003", "p004"]
    for token in tokens:
        assert not table.astype(str).isin([token]).any().any()

    row = table[(table["participant"] == "p002") & (table["item"] == "q10")].iloc[0]
    assert row["answer"] == "5"
    assert row["prediction"] == "2"
    assert row["ground_truth"] == "3"
    assert not row["correct"]
    assert not row["model_correct"]
    assert row["response_seconds"] == pytest.approx(1.5 + 9)
    assert row["condition"] == "U"
    assert not row["practice"]
    assert pd.isna(row["helpful_view"])


def test_load_long_table_without_answer_key(reference_store):
    url, _ = reference_store
    table = load_from_store(url, "reference", None)
    assert table["prediction"].isna().all()
    assert table["correct"].isna().all()


def test_load_long_table_unknown_study(reference_store):
    url, _ = reference_store
    with pytest.raises(StudyInputError, match="'missing' is not in the response store.*reference"):
        load_from_store(url, "missing", None)


def test_load_long_table_answer_key_lacks_item(reference_store):
    url, _ = reference_store
    key = {"study": "reference", "items": {"q01": {"prediction": "1", "ground_truth": "1"}}}
    with pytest.raises(StudyInputError, match="lacks 11 answered items"):
        load_from_store(url, "reference", key)


SIMULATION_STUDY = """\
name: {name}
type: simulation
title: A test study
dataset: easy-vqa
model: easyvqa-minilm-cnn
selection:
  split: test
  items: 6
  practice: 2
  seed: 7
conditions: [U, U+C, MultiViz]
participants_per_condition: 2
"""


@pytest.fixture
def simulation_study(tmp_path, monkeypatch):
    """A simulation study file, its answer key in MVIZ_DATA_DIR, and a store URL (no responses yet)."""
    from studies.bundles import write_answer_key

    monkeypatch.setenv("MVIZ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    study_file = tmp_path / "pilot.yaml"
    study_file.write_text(SIMULATION_STUDY.format(name="pilot"))
    predictions = {"s1": "red", "s2": "blue", "q1": "red", "q2": "circle", "q3": "blue", "q4": "2"}
    write_answer_key("pilot", {k: {"prediction": v, "ground_truth": v, "model_correct": True}
                               for k, v in predictions.items()})
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return study_file, url


def pilot_responses():
    rows = hand_made_simulation_rows()
    return [(r["participant"], r["condition"], r["item"], r["answer"],
             {"helpful_view": r["helpful_view"], "simulated": r["simulated"]}) for r in rows]


def test_command_analyze_prints_summary(simulation_study, capsys):
    from studies.commands_analysis import command_analyze

    study_file, url = simulation_study
    write_store(url, "pilot", "simulation", ["U", "U+C", "MultiViz"], pilot_responses(),
                practice_items=("s1", "s2"))
    assert command_analyze(str(study_file), url) == 0
    output = capsys.readouterr().out
    table_lines = [line for line in output.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_lines) == 1 + 3  # header and one row per condition
    assert table_lines[1].startswith("| U ")
    assert table_lines[2].startswith("| U+C ")
    assert table_lines[3].startswith("| MultiViz ")
    assert "0.75 ± 0.25" in table_lines[1]
    assert "4 participants with counted responses (1 simulated)" in output
    assert "- U+C: no responses in this condition" in output
    assert "- MultiViz: undefined: only one participant" in output


def test_command_analyze_no_responses(simulation_study):
    from studies.commands_analysis import command_analyze

    study_file, url = simulation_study
    write_store(url, "pilot", "simulation", ["U", "U+C", "MultiViz"], [])
    with pytest.raises(StudyInputError, match="no responses yet: run the study or `mviz simulate` first"):
        command_analyze(str(study_file), url)


def test_command_analyze_study_not_in_store(simulation_study):
    from studies.commands_analysis import command_analyze

    study_file, url = simulation_study
    write_store(url, "other", "simulation", ["U"], [])
    with pytest.raises(StudyInputError, match="'pilot' is not in the response store"):
        command_analyze(str(study_file), url)


def test_command_analyze_missing_store_file(simulation_study, tmp_path):
    from studies.commands_analysis import command_analyze

    study_file, _ = simulation_study
    missing = tmp_path / "nowhere" / "store.sqlite3"
    with pytest.raises(StudyInputError, match="No response store at .*store.sqlite3"):
        command_analyze(str(study_file), f"sqlite:///{missing}")
    assert not missing.parent.exists()


def test_cli_analyze_invalid_url_exit_code(simulation_study, capsys):
    from studies.cli import main

    study_file, _ = simulation_study
    assert main(["analyze", str(study_file), "--database-url", "not a url"]) == 2
    assert "not a url" in capsys.readouterr().err


def test_command_export_default_folder(simulation_study, tmp_path, capsys):
    from studies.commands_analysis import command_export
    from studies.export import read_back

    study_file, url = simulation_study
    write_store(url, "pilot", "simulation", ["U", "U+C", "MultiViz"], pilot_responses(),
                practice_items=("s1", "s2"))
    assert command_export(str(study_file), ["csv", "latex"], None, url) == 0
    printed = capsys.readouterr().out.split()
    folder = tmp_path / "data" / "studies" / "pilot" / "exports"
    assert printed == [str(folder / name) for name in
                       ("responses.csv", "summary.csv", "responses.tex", "summary.tex")]
    summary = read_back(folder / "summary.csv")
    assert list(summary["condition"]) == ["U", "U+C", "MultiViz"]
    assert summary.loc[0, "correctness_mean"] == pytest.approx(0.75)
    responses = read_back(folder / "responses.csv")
    assert len(responses) == 12 + 6 + 4 + 1


def test_command_export_unknown_format(simulation_study):
    from studies.commands_analysis import command_export

    study_file, url = simulation_study
    with pytest.raises(StudyInputError, match="'xlsx'; use one or more of csv, json, markdown, latex"):
        command_export(str(study_file), ["csv", "xlsx"], None, url)


def test_simulation_summary_names_missing_columns():
    table = make_table(hand_made_simulation_rows()).drop(columns=["model_correct", "helpful_view"])
    with pytest.raises(StudyInputError, match="lacks the column.*model_correct, helpful_view"):
        simulation_summary(table, ["U"])


def test_summary_shapes_match_docs():
    simulation = simulation_summary(make_table(hand_made_simulation_rows()), ["U", "U+C", "MultiViz"],
                                    n_bootstrap=5)
    assert simulation.shape == (3, 18)
    rows = [make_row(p, "R_l", "f1", "text", category="color", confidence=3) for p in ("p001", "p002")]
    assert concept_summary(make_table(rows), ["R_l"], n_bootstrap=5).shape == (1, 15)
    rows = [make_row(p, "MultiViz", "q1", "prediction", confidence=3) for p in ("p001", "p002")]
    error = error_summary(make_table(rows), ["MultiViz"], categories=["prediction", "other"], n_bootstrap=5)
    assert error.shape == (1, 13 + 2 * 2)


def test_error_summary_rejects_unlisted_category():
    rows = [make_row("p001", "MultiViz", "q1", "typo category")]
    with pytest.raises(StudyInputError, match="'typo category' is not one of the categories"):
        error_summary(make_table(rows), ["MultiViz"], categories=["prediction"])
