"""Tests of participation: study sync, balanced assignment, ordering, responses and finishing.

Every test uses a real SQLite file in a temporary data folder.
"""

from __future__ import annotations

import string
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.participation import (
    finish,
    give_consent,
    join_study,
    next_item,
    progress_by_condition,
    record_shown,
    resume,
    submit_response,
    sync_study,
    touch,
)
from studies.store import (
    Condition,
    Item,
    Participant,
    Presentation,
    Response,
    Study,
    create_store,
    hash_external_id,
    utc_now,
)

CONDITIONS = ["U", "U+C", "U+C+R_l", "U+C+R_l+R_g", "MultiViz", "R_l+P", "R_g+P"]
ITEM_KEYS = ["test-00011", "test-00012", "test-00001", "test-00002", "test-00003", "test-00004"]
PRACTICE_KEYS = ["test-00011", "test-00012"]
CHOICES = ["blue", "green", "red", "teal"]


def make_definition(name: str = "test-simulation", **changes) -> StudyDefinition:
    data = {
        "name": name,
        "type": "simulation",
        "title": "Predict the model's answer",
        "dataset": "easy-vqa",
        "model": "easyvqa-minilm-cnn",
        "selection": {"items": len(ITEM_KEYS), "practice": len(PRACTICE_KEYS)},
        "conditions": CONDITIONS,
        "participants_per_condition": 3,
    }
    data.update(changes)
    return StudyDefinition.model_validate(data)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIZ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    monkeypatch.setenv("MVIZ_ID_SALT", "test-salt")
    engine = create_store()
    with Session(engine) as session:
        sync_study(session, make_definition(), ITEM_KEYS, PRACTICE_KEYS)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def participant(session):
    participant = join_study(session, "test-simulation")
    give_consent(session, participant)
    return participant


def count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def answer_in_order(session: Session, participant: Participant, n_items: int) -> None:
    for _ in range(n_items):
        key = next_item(session, participant)
        record_shown(session, participant, key)
        submit_response(session, participant, key, answer="red", allowed_answers=CHOICES)


def test_sync_study_idempotent(session):
    sync_study(session, make_definition(), ITEM_KEYS, PRACTICE_KEYS)
    sync_study(session, make_definition(), ITEM_KEYS, PRACTICE_KEYS)

    assert count(session, Study) == 1
    assert [c.name for c in session.scalars(select(Condition).order_by(Condition.position))] \
        == CONDITIONS
    items = session.scalars(select(Item).order_by(Item.position)).all()
    assert [item.item_key for item in items] == ITEM_KEYS
    assert [item.practice for item in items] == [True, True, False, False, False, False]


def test_sync_study_practice_first(session):
    keys = ["test-00001", "test-00011", "test-00002", "test-00012", "test-00003", "test-00004"]
    sync_study(session, make_definition("reordered"), keys, ["test-00012", "test-00011"])
    study = session.scalar(select(Study).where(Study.name == "reordered"))

    assert [item.item_key for item in study.items] == [
        "test-00012", "test-00011", "test-00001", "test-00002", "test-00003", "test-00004"]


def test_sync_study_updates_before_first_participant(session):
    sync_study(session, make_definition(conditions=["U", "MultiViz"], title="New title"),
               ITEM_KEYS, PRACTICE_KEYS)
    study = session.scalar(select(Study))

    assert [condition.name for condition in study.conditions] == ["U", "MultiViz"]
    assert study.title == "New title"
    assert count(session, Condition) == 2


def test_sync_study_fixed_after_first_participant(session, participant):
    with pytest.raises(StudyInputError, match="already has 1 participants.*conditions"):
        sync_study(session, make_definition(conditions=["U", "MultiViz"]), ITEM_KEYS,
                   PRACTICE_KEYS)
    changed = ITEM_KEYS[:-1] + ["test-00099"]
    with pytest.raises(StudyInputError, match="already has 1 participants.*items"):
        sync_study(session, make_definition(), changed, PRACTICE_KEYS)

    assert count(session, Condition) == 7
    assert session.scalar(select(Item).where(Item.item_key == "test-00099")) is None


def test_sync_study_count_mismatch(session):
    with pytest.raises(StudyInputError, match="defines 6 items with 2 practice items, but 5"):
        sync_study(session, make_definition("other"), ITEM_KEYS[:5], PRACTICE_KEYS)


def test_sync_study_practice_must_be_listed(session):
    with pytest.raises(StudyInputError, match="practice item 'test-00099' is not in item_keys"):
        sync_study(session, make_definition("other"), ITEM_KEYS, ["test-00011", "test-00099"])


def test_sync_study_type_change_rejected(session):
    definition = make_definition(type="error", conditions=["No viz", "MultiViz"])
    with pytest.raises(StudyInputError, match="stored as a simulation study"):
        sync_study(session, definition, ITEM_KEYS, PRACTICE_KEYS)


def test_join_fills_conditions_evenly(session):
    joined = [join_study(session, "test-simulation") for _ in range(21)]
    per_condition = Counter(participant.condition.name for participant in joined)

    assert per_condition == {name: 3 for name in CONDITIONS}
    # Without random_state, ties go to the first condition in study order.
    assert [participant.condition.name for participant in joined[:7]] == CONDITIONS


def test_join_random_ties_still_balanced(session):
    joined = [join_study(session, "test-simulation", random_state=seed) for seed in range(21)]

    assert Counter(p.condition.name for p in joined) == {name: 3 for name in CONDITIONS}
    assert [p.condition.name for p in joined[:7]] != CONDITIONS


def test_join_ignores_inactive_participants(session):
    first = join_study(session, "test-simulation")
    first.last_seen_at = utc_now() - timedelta(hours=2)
    session.commit()

    second = join_study(session, "test-simulation")
    assert second.condition.name == first.condition.name == "U"

    third = join_study(session, "test-simulation", active_window=timedelta(hours=3))
    assert third.condition.name == "U+C"


def test_join_counts_finished_participants(session):
    first = join_study(session, "test-simulation")
    give_consent(session, first)
    answer_in_order(session, first, len(ITEM_KEYS))
    finish(session, first)
    first.last_seen_at = utc_now() - timedelta(days=2)
    session.commit()

    assert join_study(session, "test-simulation").condition.name == "U+C"


def test_join_balances_simulated_separately(session):
    for _ in range(3):
        join_study(session, "test-simulation", simulated=True)

    assert join_study(session, "test-simulation").condition.name == "U"


def test_join_item_order(session):
    orders = [join_study(session, "test-simulation").item_order for _ in range(10)]

    for order in orders:
        assert order[:2] == PRACTICE_KEYS
        assert sorted(order[2:]) == sorted(ITEM_KEYS[2:])
    assert len({tuple(order) for order in orders}) > 1


def test_join_seeded_order_reproducible(session):
    first = join_study(session, "test-simulation", random_state=42)
    sync_study(session, make_definition("copy"), ITEM_KEYS, PRACTICE_KEYS)
    second = join_study(session, "copy", random_state=42)

    assert first.item_order == second.item_order
    assert first.condition.name == second.condition.name


def test_join_unknown_study(session):
    with pytest.raises(StudyInputError, match="study 'absent' is not in the response store"):
        join_study(session, "absent")


def test_join_same_external_id_resumes(session):
    first = join_study(session, "test-simulation", external_id="PROLIFIC123")
    for _ in range(3):
        join_study(session, "test-simulation")
    again = join_study(session, "test-simulation", external_id="PROLIFIC123")

    assert again.id == first.id
    assert again.token == first.token
    assert again.condition.name == "U"
    assert count(session, Participant) == 4
    assert again.external_id_hash == hash_external_id("PROLIFIC123")
    assert "PROLIFIC123" not in again.external_id_hash


def test_concurrent_joins_balanced(engine):
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def join_seven() -> None:
        try:
            with Session(engine) as session:
                barrier.wait()
                for _ in range(7):
                    join_study(session, "test-simulation")
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=join_seven) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    with Session(engine) as session:
        per_condition = Counter(session.scalars(
            select(Condition.name).join(Participant, Participant.condition_id == Condition.id)))
    assert per_condition == {name: 2 for name in CONDITIONS}


def test_resume_by_token(session, participant):
    resumed = resume(session, "test-simulation", participant.token)

    assert resumed.id == participant.id
    assert resumed.condition.name == participant.condition.name


def test_resume_forged_token_rejected(session, participant):
    sync_study(session, make_definition("other-study"), ITEM_KEYS, PRACTICE_KEYS)
    with pytest.raises(StudyInputError) as forged:
        resume(session, "test-simulation", participant.token[:-2] + "xx")
    with pytest.raises(StudyInputError) as elsewhere:
        resume(session, "other-study", participant.token)
    with pytest.raises(StudyInputError):
        resume(session, "test-simulation", "")

    assert str(forged.value) == str(elsewhere.value).replace("other-study", "test-simulation")
    assert participant.token not in str(elsewhere.value)


def test_next_item_follows_order(session, participant):
    order = list(participant.item_order)
    assert next_item(session, participant) == order[0]

    answer_in_order(session, participant, 2)
    assert next_item(session, participant) == order[2]

    answer_in_order(session, participant, 4)
    assert next_item(session, participant) is None


def test_submit_requires_consent(session):
    participant = join_study(session, "test-simulation")
    with pytest.raises(StudyInputError, match="has not given consent"):
        submit_response(session, participant, participant.item_order[0], answer="red")
    with pytest.raises(StudyInputError, match="has not given consent"):
        record_shown(session, participant, participant.item_order[0])

    assert count(session, Response) == 0


def test_double_submit_keeps_first(session, participant):
    key = next_item(session, participant)
    first = submit_response(session, participant, key, answer="red", allowed_answers=CHOICES)
    second = submit_response(session, participant, key, answer="blue", allowed_answers=CHOICES)

    assert second.id == first.id
    assert second.answer == "red"
    assert count(session, Response) == 1


def test_concurrent_submits_store_one_row(engine):
    with Session(engine) as session:
        participant = join_study(session, "test-simulation")
        give_consent(session, participant)
        token, key = participant.token, next_item(session, participant)

    barrier = threading.Barrier(2)
    returned: dict[str, tuple[int, str]] = {}
    failures: list[BaseException] = []

    def submit(answer: str) -> None:
        try:
            with Session(engine) as session:
                own = resume(session, "test-simulation", token)
                barrier.wait()
                response = submit_response(session, own, key, answer=answer,
                                           allowed_answers=CHOICES)
                returned[answer] = (response.id, response.answer)
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=submit, args=(answer,)) for answer in ("red", "blue")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    with Session(engine) as session:
        stored = session.scalars(select(Response)).all()
    assert len(stored) == 1
    assert returned["red"] == returned["blue"] == (stored[0].id, stored[0].answer)


def test_answer_outside_choices_writes_nothing(session, participant):
    key = next_item(session, participant)
    with pytest.raises(StudyInputError, match="invalid answer 'purple'; choose one of: blue"):
        submit_response(session, participant, key, answer="purple", allowed_answers=CHOICES)

    assert count(session, Response) == 0
    assert next_item(session, participant) == key


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"answer": "   "}, "the answer is empty"),
        ({"answer": "x" * 11, "max_length": 10}, "at most 10"),
        ({"answer": "red", "helpful_view": "both"}, "invalid helpful view 'both'"),
        ({"answer": "red", "confidence": 0}, "invalid confidence 0"),
        ({"answer": "red", "confidence": 6}, "invalid confidence 6"),
        ({"answer": "red", "confidence": "3"}, "invalid confidence '3'"),
        ({"answer": "red", "confidence": True}, "invalid confidence True"),
    ],
)
def test_invalid_response_writes_nothing(session, participant, fields, message):
    key = next_item(session, participant)
    with pytest.raises(StudyInputError, match=message):
        submit_response(session, participant, key, **fields)

    assert count(session, Response) == 0


def test_free_text_stored_as_typed(session, participant):
    key = next_item(session, participant)
    response = submit_response(session, participant, key, answer="  round shapes\n",
                               confidence=4, helpful_view="features", max_length=20)

    assert response.answer == "  round shapes\n"
    assert response.confidence == 4
    assert response.helpful_view == "features"


def test_submit_out_of_order_rejected(session, participant):
    later = participant.item_order[3]
    with pytest.raises(StudyInputError, match="is not the participant's next item"):
        submit_response(session, participant, later, answer="red")
    with pytest.raises(StudyInputError, match="not one of this participant's items"):
        submit_response(session, participant, "test-09999", answer="red")

    assert count(session, Response) == 0


def test_resubmit_answered_item_allowed(session, participant):
    first_key = participant.item_order[0]
    answer_in_order(session, participant, 2)
    again = submit_response(session, participant, first_key, answer="blue")

    assert again.answer == "red"
    assert count(session, Response) == 2


def test_shown_at_from_first_presentation(session, participant):
    key = next_item(session, participant)
    first_shown = record_shown(session, participant, key)
    assert record_shown(session, participant, key) == first_shown

    response = submit_response(session, participant, key, answer="red")
    assert response.shown_at == first_shown
    assert response.answered_at >= first_shown
    assert count(session, Presentation) == 1


def test_shown_at_defaults_to_answer_time(session, participant):
    key = next_item(session, participant)
    response = submit_response(session, participant, key, answer="red")

    assert response.shown_at == response.answered_at


def test_touch_and_consent_set_times(session):
    participant = join_study(session, "test-simulation")
    participant.last_seen_at = utc_now() - timedelta(hours=5)
    session.commit()

    touch(session, participant)
    assert utc_now() - participant.last_seen_at < timedelta(minutes=5)

    give_consent(session, participant)
    consented = participant.consented_at
    give_consent(session, participant)
    assert participant.consented_at == consented


def test_finish_requires_all_responses(session, participant):
    answer_in_order(session, participant, 5)
    with pytest.raises(StudyInputError, match="1 of 6 items have no response"):
        finish(session, participant)

    assert participant.finished_at is None


def test_completion_code_stable(session, participant):
    answer_in_order(session, participant, 6)
    code = finish(session, participant)
    finished_at = participant.finished_at

    assert len(code) == 8
    assert set(code) <= set(string.ascii_uppercase + string.digits)
    assert finish(session, participant) == code
    assert participant.finished_at == finished_at
    assert participant.completion_code == code


def test_progress_by_condition(session, participant):
    answer_in_order(session, participant, 6)
    finish(session, participant)
    active = join_study(session, "test-simulation")
    give_consent(session, active)
    answer_in_order(session, active, 1)
    stale = join_study(session, "test-simulation")
    stale.last_seen_at = utc_now() - timedelta(hours=2)
    session.commit()
    join_study(session, "test-simulation", simulated=True)

    rows = {row["condition"]: row for row in progress_by_condition(session, "test-simulation")}

    assert list(rows) == CONDITIONS
    assert rows["U"] == {"condition": "U", "joined": 2, "active": 1, "finished": 1,
                         "responses": 6, "simulated": 1, "target": 3}
    assert rows["U+C"] == {"condition": "U+C", "joined": 1, "active": 1, "finished": 0,
                           "responses": 1, "simulated": 0, "target": 3}
    assert rows["U+C+R_l"]["joined"] == 1
    assert rows["U+C+R_l"]["active"] == 0
    assert rows["R_g+P"]["joined"] == 0
