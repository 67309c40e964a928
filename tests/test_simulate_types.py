"""Tests of simulated participants in concept and error studies: the answer generators and
``mviz simulate`` on small prepared studies written with studies.bundles."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from studies.coding import (
    CONCEPT_MAX_LENGTH,
    ERROR_CATEGORY_CODES,
    concept_texts,
    initial_assignments,
    normalize_text,
    save_coding,
)
from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.simulate import (
    DEFAULT_CONCEPT_VOCABULARY,
    SimulatedItem,
    command_simulate,
    concept_answers,
    error_answers,
)
from studies.store import Condition, Item, Participant, Response, Study, create_store

FEATURE_KEYS = ["f003", "f017", "f042", "f101", "f150"]
ERROR_KEYS = ["test-00005", "test-00011", "test-00023", "test-00031", "test-00047"]
VOCABULARY = {"red": ["red color", "the colour red"], "circle": ["circle", "round shape"],
              "triangle": ["triangle"]}


def make_definition(name: str, study_type: str) -> StudyDefinition:
    return StudyDefinition.model_validate({
        "name": name,
        "type": study_type,
        "title": f"A simulated {study_type} study",
        "dataset": "easy-vqa",
        "model": "easyvqa-minilm-cnn",
        "selection": {"items": 5, "practice": 1},
        "participants_per_condition": 2,
    })


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("MVIZ_DATA_DIR", str(folder))
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    monkeypatch.setenv("MVIZ_ID_SALT", "test-salt")
    return folder


def prepare_study(tmp_path, name: str, study_type: str, item_keys: list[str]) -> str:
    """Write a study file and a prepared study (items, bundles, answer key); return the file."""
    from studies.bundles import write_answer_key, write_bundle, write_item_list

    study_file = tmp_path / f"{name}.yaml"
    study_file.write_text(make_definition(name, study_type).model_dump_json())
    write_item_list(name, item_keys, item_keys[:1])
    for key in item_keys:
        write_bundle(name, key, {"format": 1, "study": name, "item_key": key}, arrays={},
                     pictures={})
    if study_type == "error":
        write_answer_key(name, {key: {"prediction": "red", "ground_truth": "blue",
                                      "model_correct": False} for key in item_keys})
    return str(study_file)


def stored_rows(session: Session, study_name: str):
    return session.execute(
        select(Participant.id, Condition.name, Item.item_key, Response.answer,
               Response.confidence, Response.helpful_view)
        .join(Participant, Response.participant_id == Participant.id)
        .join(Condition, Participant.condition_id == Condition.id)
        .join(Item, Response.item_id == Item.id)
        .join(Study, Item.study_id == Study.id)
        .where(Study.name == study_name)
        .order_by(Participant.id, Item.item_key)).all()


def item(condition: str, key: str = "f017", choices=None) -> SimulatedItem:
    return SimulatedItem(condition=condition, item_key=key, practice=False, choices=choices,
                         answer_key=None, feature_condition=True)


def within_standard_errors(count: int, n: int, expected: float, n_errors: float = 4.0) -> bool:
    tolerance = n_errors * math.sqrt(expected * (1 - expected) / n)
    return abs(count / n - expected) < tolerance


# --------------------------------------------------------------------------------------
# Concept studies


def test_command_simulate_concept_study(data_dir, tmp_path, capsys):
    study_file = prepare_study(tmp_path, "concept-pilot", "concept", FEATURE_KEYS)

    assert command_simulate(study_file, participants=6, seed=1) == 0

    output = capsys.readouterr().out
    assert "Study concept-pilot: 6 simulated participants" in output
    assert "R_l+R_g without maps" in output
    assert output.count("finished   2") == 3
    engine = create_store()
    with Session(engine) as session:
        rows = stored_rows(session, "concept-pilot")
        assert len(rows) == 6 * len(FEATURE_KEYS)
        assert all(0 < len(row.answer) <= CONCEPT_MAX_LENGTH for row in rows)
        assert all(1 <= row.confidence <= 5 for row in rows)
        assert all(row.helpful_view is None for row in rows)

        # Case, punctuation and typing variants give coding work: fewer categories than texts.
        texts = concept_texts(session, "concept-pilot")
        assignments = initial_assignments(texts)
        assert len(set(assignments.values())) < texts["text"].nunique()
        assert len(assignments) == len(texts)
    engine.dispose()


def test_simulated_concept_study_analyzed(data_dir, tmp_path, capsys):
    from studies.commands_analysis import load_study_tables

    study_file = prepare_study(tmp_path, "concept-pilot", "concept", FEATURE_KEYS)
    command_simulate(study_file, participants=6, seed=2)
    engine = create_store()
    with Session(engine) as session:
        save_coding(session, "concept-pilot",
                    initial_assignments(concept_texts(session, "concept-pilot")))
    engine.dispose()

    tables = load_study_tables(study_file, None)

    summary = tables.summary
    assert list(summary["condition"]) == ["R_l", "R_l+R_g without maps", "R_l+R_g"]
    assert list(summary["coding_version"]) == [1, 1, 1]
    assert list(summary["responses"]) == [2 * 4] * 3  # practice items left out
    assert (summary["coded_responses"] == summary["responses"]).all()


def test_concept_answers_follow_agreement():
    always = concept_answers({"R_l": 1.0}, VOCABULARY, typo_rate=0.0, surface_rate=0.0)
    never = concept_answers({"R_l": 0.0}, VOCABULARY, typo_rate=0.0, surface_rate=0.0)
    rng = random.Random(0)

    # Every participant shares the feature's concept, so the texts of full agreement all
    # come from one concept and those of no agreement never do.
    agreeing = {always(item("R_l"), rng).answer for _ in range(200)}
    owners = {concept for concept, phrasings in VOCABULARY.items() if agreeing <= set(phrasings)}
    assert len(owners) == 1
    (own,) = owners
    disagreeing = {never(item("R_l"), rng).answer for _ in range(200)}
    assert disagreeing.isdisjoint(VOCABULARY[own])


def test_concept_answers_share_by_condition():
    generator = concept_answers(None, VOCABULARY, typo_rate=0.0, surface_rate=0.0, seed=3)
    own_texts = set(VOCABULARY[own_concept(seed=3, key="f042")])
    rng = random.Random(1)
    n_draws = 4000

    for condition, expected in {"R_l": 0.40, "R_l+R_g": 0.70}.items():
        count = sum(generator(item(condition, "f042"), rng).answer in own_texts
                    for _ in range(n_draws))
        assert within_standard_errors(count, n_draws, expected), condition


def own_concept(seed: int, key: str) -> str:
    """Return the concept of feature ``key``: what a full-agreement generator writes."""
    generator = concept_answers({"R_l": 1.0}, VOCABULARY, typo_rate=0.0, surface_rate=0.0,
                                seed=seed)
    text = generator(item("R_l", key), random.Random(0)).answer
    return next(concept for concept, phrasings in VOCABULARY.items() if text in phrasings)


def test_concept_answers_variants():
    typos = concept_answers({"R_l": 1.0}, VOCABULARY, typo_rate=1.0, surface_rate=0.0)
    surface = concept_answers({"R_l": 1.0}, VOCABULARY, typo_rate=0.0, surface_rate=1.0)
    phrasings = {text for texts in VOCABULARY.values() for text in texts}
    normalized = {normalize_text(text) for text in phrasings}
    rng = random.Random(2)

    for _ in range(100):
        typed = typos(item("R_l"), rng).answer
        assert typed not in phrasings
        assert min(abs(len(typed) - len(text)) for text in phrasings) <= 1
        varied = surface(item("R_l"), rng).answer
        assert normalize_text(varied) in normalized


def test_concept_answers_confidence_in_range():
    generator = concept_answers()
    rng = random.Random(4)
    confidences = Counter(generator(item("R_l+R_g"), rng).confidence for _ in range(500))

    assert set(confidences) == {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------------------
# Error studies


def test_command_simulate_error_study(data_dir, tmp_path, capsys):
    study_file = prepare_study(tmp_path, "error-pilot", "error", ERROR_KEYS)

    assert command_simulate(study_file, participants=4, seed=0) == 0

    output = capsys.readouterr().out
    assert "Study error-pilot: 4 simulated participants" in output
    assert output.count("finished   2") == 2
    engine = create_store()
    with Session(engine) as session:
        rows = stored_rows(session, "error-pilot")
        assert len(rows) == 4 * len(ERROR_KEYS)
        assert {row.answer for row in rows} <= set(ERROR_CATEGORY_CODES)
        assert all(1 <= row.confidence <= 5 for row in rows)
        assert {row.name for row in rows} == {"No viz", "MultiViz"}
    engine.dispose()

    from studies.commands_analysis import load_study_tables

    summary = load_study_tables(study_file, None).summary
    assert list(summary["condition"]) == ["No viz", "MultiViz"]
    counts = summary[[f"count_{code}_mean" for code in ERROR_CATEGORY_CODES]].sum(axis=1)
    assert list(counts) == [4.0, 4.0]  # each participant puts 4 counted items somewhere


def test_error_answers_share_by_condition():
    generator = error_answers(seed=5)
    rng = random.Random(3)
    n_draws = 4000

    for condition, expected in {"No viz": 0.45, "MultiViz": 0.70}.items():
        answers = Counter(generator(item(condition, "test-00011"), rng).answer
                          for _ in range(n_draws))
        own, count = answers.most_common(1)[0]
        assert within_standard_errors(count, n_draws, expected), condition
        for other in set(ERROR_CATEGORY_CODES) - {own}:
            assert within_standard_errors(answers[other], n_draws, (1 - expected) / 2), other


def test_error_answers_use_item_choices():
    generator = error_answers({"MultiViz": 0.0})
    rng = random.Random(6)

    answers = {generator(item("MultiViz", choices=["a", "b"]), rng).answer for _ in range(50)}

    assert len(answers) == 1
    assert answers <= {"a", "b"}


# --------------------------------------------------------------------------------------
# Invalid inputs


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: concept_answers({"U": 0.5}), "agreement: unknown condition 'U'"),
        (lambda: concept_answers({"R_l": 1.5}), r"agreement\['R_l'\]: invalid value 1.5"),
        (lambda: concept_answers(vocabulary={"red": ["red"]}), "give at least two"),
        (lambda: concept_answers(vocabulary={"red": ["red"], "blue": []}), "invalid phrasings"),
        (lambda: concept_answers(vocabulary={"red": ["red"], "blue": [" "]}),
         "invalid phrasing ' '"),
        (lambda: concept_answers(typo_rate=2.0), "typo_rate: invalid value 2.0"),
        (lambda: error_answers({"R_l": 0.5}), "agreement: unknown condition 'R_l'"),
    ],
)
def test_generators_invalid_inputs(build, message):
    with pytest.raises(StudyInputError, match=message):
        build()


def test_default_vocabulary_fits_length():
    assert len(DEFAULT_CONCEPT_VOCABULARY) >= 2
    assert all(0 < len(text) <= CONCEPT_MAX_LENGTH
               for texts in DEFAULT_CONCEPT_VOCABULARY.values() for text in texts)
