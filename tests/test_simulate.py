"""Tests of simulated participants and of the Monte-Carlo power estimate."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from scipy import stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.simulate import (
    SimulatedAnswer,
    SimulatedItem,
    command_simulate,
    detection_power,
    model_prediction_answers,
    simulate_participants,
)
from studies.store import Condition, Item, Participant, Response, create_store, hash_external_id

CONDITIONS = ["U", "U+C", "U+C+R_l", "U+C+R_l+R_g", "MultiViz", "R_l+P", "R_g+P"]
FEATURE_CONDITIONS = {"U+C+R_l", "U+C+R_l+R_g", "MultiViz", "R_l+P", "R_g+P"}
ITEM_KEYS = ["test-00007", "test-00001", "test-00002", "test-00003", "test-00004"]
PRACTICE_KEYS = ["test-00007"]
CHOICES = {key: ["blue", "green", "red", "teal"] for key in ITEM_KEYS}
ANSWER_KEY = {key: {"prediction": "red", "ground_truth": "blue"} for key in ITEM_KEYS}


def make_definition(study_type: str = "simulation", **changes) -> StudyDefinition:
    data = {
        "name": f"test-{study_type}",
        "type": study_type,
        "title": "A simulated study",
        "dataset": "easy-vqa",
        "model": "easyvqa-minilm-cnn",
        "selection": {"items": len(ITEM_KEYS), "practice": len(PRACTICE_KEYS)},
        "participants_per_condition": 2,
    }
    if study_type == "simulation":
        data["conditions"] = CONDITIONS
    data.update(changes)
    return StudyDefinition.model_validate(data)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("MVIZ_DATA_DIR", str(folder))
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    monkeypatch.setenv("MVIZ_ID_SALT", "test-salt")
    return folder


@pytest.fixture
def session(data_dir):
    engine = create_store()
    with Session(engine) as session:
        yield session
    engine.dispose()


def simulate(session: Session, participants: int, random_state: int = 0, **options):
    return simulate_participants(session, make_definition(), ITEM_KEYS, PRACTICE_KEYS,
                                 ANSWER_KEY, CHOICES, participants=participants,
                                 random_state=random_state, **options)


def stored_responses(session: Session) -> list[tuple[str, str, str, str | None]]:
    rows = session.execute(
        select(Participant.external_id_hash, Item.item_key, Response.answer,
               Response.helpful_view)
        .join(Participant, Response.participant_id == Participant.id)
        .join(Item, Response.item_id == Item.id)
        .order_by(Participant.external_id_hash, Item.item_key))
    return [tuple(row) for row in rows]


def test_simulated_participants_complete_study(session):
    participants = simulate(session, 14)

    assert len(participants) == 14
    assert all(p.finished_at is not None and p.completion_code for p in participants)
    assert all(p.simulated for p in participants)
    assert participants[4].external_id_hash == hash_external_id("simulated-5")
    assert Counter(p.condition.name for p in participants) == {name: 2 for name in CONDITIONS}
    assert len(session.scalars(select(Response)).all()) == 14 * len(ITEM_KEYS)


def test_simulated_answers_follow_accuracy(session):
    always = dict.fromkeys(CONDITIONS, 1.0)
    never = dict.fromkeys(CONDITIONS, 0.0)
    simulate(session, 7, accuracy=always)
    first = {r.id for r in session.scalars(select(Response))}
    simulate_participants(session, make_definition(name="never"), ITEM_KEYS, PRACTICE_KEYS,
                          ANSWER_KEY, CHOICES, participants=7, random_state=0, accuracy=never)

    for response in session.scalars(select(Response)):
        if response.id in first:
            assert response.answer == "red"
        else:
            assert response.answer in {"blue", "green", "teal"}


def test_helpful_view_only_in_feature_conditions(session):
    simulate(session, 7)
    rows = session.execute(
        select(Condition.name, Response.helpful_view)
        .join(Participant, Participant.condition_id == Condition.id)
        .join(Response, Response.participant_id == Participant.id)).all()

    for condition, helpful_view in rows:
        if condition in FEATURE_CONDITIONS:
            assert helpful_view in {"overview", "features"}
        else:
            assert helpful_view is None


def test_simulation_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIZ_ID_SALT", "test-salt")
    runs = []
    for run in ("first", "second"):
        engine = create_store(f"sqlite:///{tmp_path / run}.sqlite3")
        with Session(engine) as session:
            simulate(session, 7, random_state=3)
            orders = [p.item_order for p in session.scalars(select(Participant)
                                                            .order_by(Participant.id))]
            runs.append((stored_responses(session), orders))
        engine.dispose()

    assert runs[0] == runs[1]


def test_second_run_resumes_and_extends(session):
    simulate(session, 7)
    before = stored_responses(session)
    participants = simulate(session, 14)

    assert len(session.scalars(select(Participant)).all()) == 14
    assert len(participants) == 14
    after = set(stored_responses(session))
    assert set(before) <= after
    assert len(after) == 14 * len(ITEM_KEYS)


def test_simulated_balanced_apart_from_real(session):
    from studies.participation import join_study

    simulate(session, 1)
    real = join_study(session, "test-simulation")

    assert real.condition.name == "U"
    assert real.simulated is False


def test_prediction_generator_shares():
    generator = model_prediction_answers({"U": 0.7})
    item = SimulatedItem(condition="U", item_key="test-00001", practice=False,
                         choices=["blue", "green", "red", "teal"],
                         answer_key={"prediction": "red", "ground_truth": "blue"},
                         feature_condition=False)
    rng = random.Random(0)
    n_draws = 20000
    answers = Counter(generator(item, rng).answer for _ in range(n_draws))

    # Each share within 4 binomial standard errors of its expected value.
    for choice, expected in {"red": 0.7, "blue": 0.1, "green": 0.1, "teal": 0.1}.items():
        tolerance = 4 * math.sqrt(expected * (1 - expected) / n_draws)
        assert abs(answers[choice] / n_draws - expected) < tolerance


def test_concept_study_needs_generator(session):
    definition = make_definition("concept")
    with pytest.raises(StudyInputError, match="need an answer generator"):
        simulate_participants(session, definition, ITEM_KEYS, PRACTICE_KEYS, {}, {},
                              participants=3, random_state=0)


def test_concept_study_with_generator(session):
    def describe(item: SimulatedItem, rng: random.Random) -> SimulatedAnswer:
        return SimulatedAnswer(f"concept of {item.item_key}", confidence=rng.randint(1, 5))

    definition = make_definition("concept")
    participants = simulate_participants(session, definition, ITEM_KEYS, PRACTICE_KEYS, {}, {},
                                         participants=3, random_state=0,
                                         answer_generator=describe)

    assert {p.condition.name for p in participants} == {"R_l", "R_l+R_g without maps", "R_l+R_g"}
    responses = session.scalars(select(Response)).all()
    assert len(responses) == 3 * len(ITEM_KEYS)
    assert all(1 <= r.confidence <= 5 for r in responses)
    assert all(r.answer == f"concept of {r.item.item_key}" for r in responses)


def test_invalid_simulation_inputs(session):
    with pytest.raises(StudyInputError, match="accuracy: unknown condition 'Q'"):
        simulate(session, 1, accuracy={"Q": 0.5})
    with pytest.raises(StudyInputError, match=r"accuracy\['U'\]: invalid value 1.5"):
        simulate(session, 1, accuracy={"U": 1.5})
    with pytest.raises(StudyInputError, match="invalid number of participants 0"):
        simulate(session, 0)
    wrong_choices = {**CHOICES, "test-00003": ["blue", "green"]}
    with pytest.raises(StudyInputError, match="'red' of item 'test-00003' is not among"):
        simulate_participants(session, make_definition(), ITEM_KEYS, PRACTICE_KEYS, ANSWER_KEY,
                              wrong_choices, participants=1, random_state=0)

    assert session.scalars(select(Participant)).all() == []


def test_command_simulate_prepared_study(data_dir, capsys, tmp_path):
    from studies.bundles import write_answer_key, write_bundle, write_item_list

    definition = make_definition(name="cli-study")
    study_file = tmp_path / "cli-study.yaml"
    study_file.write_text(definition.model_dump_json())  # JSON is valid YAML
    write_item_list("cli-study", ITEM_KEYS, PRACTICE_KEYS)
    write_answer_key("cli-study", ANSWER_KEY)
    for key in ITEM_KEYS:
        write_bundle("cli-study", key, {"format": 1, "item_key": key, "choices": CHOICES[key]},
                     arrays={}, pictures={})

    assert command_simulate(str(study_file), participants=7, seed=1) == 0

    output = capsys.readouterr().out
    assert "Study cli-study: 7 simulated participants" in output
    assert output.count("finished   1") == 7
    engine = create_store()
    with Session(engine) as session:
        assert len(session.scalars(select(Response)).all()) == 7 * len(ITEM_KEYS)
    engine.dispose()


def test_power_equal_probabilities_near_alpha():
    n_simulations = 4000
    power = detection_power(10, 0.7, 0.7, n_items=20, alpha=0.05,
                            n_simulations=n_simulations, random_state=1)

    # The rejection rate under the null is alpha; allow 4 Monte-Carlo standard errors.
    assert abs(power - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n_simulations)


def test_power_large_difference_near_one():
    assert detection_power(10, 0.3, 0.9, n_items=20) > 0.99


def test_power_matches_normal_approximation():
    n, p_a, p_b, n_items, alpha = 40, 0.60, 0.65, 20, 0.05
    power = detection_power(n, p_a, p_b, n_items=n_items, alpha=alpha, n_simulations=4000,
                            random_state=2)

    # Two-sided z-test on the difference of mean correctness; each participant's
    # correctness has variance p (1 - p) / n_items.
    standard_error = math.sqrt((p_a * (1 - p_a) + p_b * (1 - p_b)) / n_items / n)
    shift = abs(p_a - p_b) / standard_error
    z = stats.norm.ppf(1 - alpha / 2)
    expected = stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z)

    assert expected == pytest.approx(0.544, abs=0.005)
    assert power == pytest.approx(expected, abs=0.04)


def test_power_increases_with_participants():
    powers = [detection_power(n, 0.6, 0.7, random_state=0) for n in (5, 20, 60)]

    assert powers == sorted(powers)
    assert powers[0] < 0.5 < powers[2]


def test_power_degenerate_groups():
    assert detection_power(5, 1.0, 0.0) == 1.0
    assert detection_power(5, 1.0, 1.0) == 0.0


def test_power_seeded():
    assert detection_power(8, 0.6, 0.7, random_state=5) == detection_power(8, 0.6, 0.7,
                                                                           random_state=5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_per_condition": 1}, "at least 2"),
        ({"p_a": 1.2}, "invalid p_a 1.2"),
        ({"n_items": 0}, "invalid n_items 0"),
        ({"alpha": 0.0}, "invalid alpha 0.0"),
        ({"n_simulations": 0}, "invalid n_simulations 0"),
    ],
)
def test_power_invalid_inputs(arguments, message):
    values = {"n_per_condition": 10, "p_a": 0.5, "p_b": 0.6, **arguments}
    with pytest.raises(StudyInputError, match=message):
        detection_power(values.pop("n_per_condition"), values.pop("p_a"), values.pop("p_b"),
                        **values)

