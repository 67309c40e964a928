"""Everything a participant does, shared by the app and by simulated participants.

Every function takes an open ``Session``. The functions that write (``sync_study``,
``join_study``, ``give_consent``, ``touch``, ``record_shown``, ``submit_response`` and
``finish``) commit their own unit of work through ``store.write_transaction``. Each first
commits whatever transaction the session has open. It then runs in a transaction of its
own, which on SQLite starts with ``BEGIN IMMEDIATE``. The read functions (``resume``,
``next_item``, ``progress_by_condition``) commit nothing. Open one session per request and
pass objects loaded in that same session.

A participation goes: ``join_study`` (or ``resume`` with the token), ``give_consent``, then
per item ``next_item``, ``record_shown`` and ``submit_response``, and finally ``finish``,
which returns the completion code.
"""

from __future__ import annotations

import logging
import random
import secrets
import string
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.store import (
    Condition,
    Item,
    Participant,
    Presentation,
    Response,
    Study,
    hash_external_id,
    utc_now,
    write_transaction,
)

logger = logging.getLogger(__name__)

# A participant who has not finished counts as active for this long after the last request.
ACTIVE_WINDOW = timedelta(hours=1)
HELPFUL_VIEWS: tuple[str, ...] = ("overview", "features")
CONFIDENCE_MIN, CONFIDENCE_MAX = 1, 5
COMPLETION_CODE_LENGTH = 8
_COMPLETION_CODE_ALPHABET = string.ascii_uppercase + string.digits
_INVALID_LINK_MESSAGE = (
    "this participation link is not valid for study {study!r}; open the study's start link "
    "to take part")


def sync_study(
    session: Session,
    definition: StudyDefinition,
    item_keys: Sequence[str],
    practice_keys: Sequence[str],
) -> Study:
    """Insert or update the study, its conditions and its items (idempotent).

    Parameters
    ----------
    definition : StudyDefinition
        The validated study file.
    item_keys : sequence of str
        Every item key in study order, practice items included (as
        ``studies.bundles.list_items`` returns them).
    practice_keys : sequence of str
        The practice items, a subset of ``item_keys``, in the order participants see them.

    Raises
    ------
    StudyInputError
        When the keys do not match the definition's item counts, or when the study already
        has participants and its type, conditions or items would change.
    """
    items = _ordered_items(definition, item_keys, practice_keys)

    with write_transaction(session):
        study = session.scalar(select(Study).where(Study.name == definition.name))
        if study is None:
            study = Study(name=definition.name, type=definition.type)
            session.add(study)
            n_participants = 0
        else:
            n_participants = _count_participants(session, study)
            if study.type != definition.type:
                raise StudyInputError(
                    f"study {definition.name!r} is stored as a {study.type} study but its file "
                    f"says {definition.type}; give the new study another name")
        study.title = definition.title
        study.participants_per_condition = definition.participants_per_condition
        _sync_conditions(study, definition.conditions, n_participants)
        _sync_items(study, items, n_participants)
    logger.info("synchronized study %r: %d conditions, %d items",
                definition.name, len(definition.conditions), len(items))
    return study


def _ordered_items(
    definition: StudyDefinition, item_keys: Sequence[str], practice_keys: Sequence[str]
) -> list[tuple[str, bool]]:
    """Return ``(item_key, practice)`` pairs: practice items first, then counted items."""
    for kind, keys in (("item_keys", item_keys), ("practice_keys", practice_keys)):
        invalid = [key for key in keys if not isinstance(key, str) or not key.strip()]
        if invalid:
            raise StudyInputError(f"{kind}: invalid item key {invalid[0]!r}; keys are non-empty "
                                  "strings such as 'test-03121'")
        duplicates = sorted(key for key, count in Counter(keys).items() if count > 1)
        if duplicates:
            raise StudyInputError(f"{kind}: item key {duplicates[0]!r} appears twice")

    missing = [key for key in practice_keys if key not in item_keys]
    if missing:
        raise StudyInputError(
            f"practice item {missing[0]!r} is not in item_keys; item_keys lists every item, "
            "practice items included")
    selection = definition.selection
    if len(item_keys) != selection.items or len(practice_keys) != selection.practice:
        raise StudyInputError(
            f"study {definition.name!r} defines {selection.items} items with "
            f"{selection.practice} practice items, but {len(item_keys)} items with "
            f"{len(practice_keys)} practice items were given; prepare the study again")

    practice = set(practice_keys)
    counted = [key for key in item_keys if key not in practice]
    return [(key, True) for key in practice_keys] + [(key, False) for key in counted]


def _count_participants(session: Session, study: Study) -> int:
    statement = select(func.count()).select_from(Participant).where(
        Participant.study_id == study.id)
    return session.scalar(statement) or 0


def _sync_conditions(study: Study, names: Sequence[str], n_participants: int) -> None:
    stored = [condition.name for condition in study.conditions]
    if stored == list(names):
        return
    if n_participants:
        raise StudyInputError(
            f"study {study.name!r} already has {n_participants} participants, so its conditions "
            f"cannot change (stored: {', '.join(stored)}; study file: {', '.join(names)}); "
            "restore the conditions or give the changed study another name")

    by_name = {condition.name: condition for condition in study.conditions}
    study.conditions = [by_name.get(name) or Condition(name=name) for name in names]
    for position, condition in enumerate(study.conditions):
        condition.position = position


def _sync_items(study: Study, items: list[tuple[str, bool]], n_participants: int) -> None:
    stored = [(item.item_key, item.practice) for item in study.items]
    if stored == items:
        return
    if n_participants:
        raise StudyInputError(
            f"study {study.name!r} already has {n_participants} participants, so its items "
            f"cannot change ({len(stored)} stored, {len(items)} prepared); restore the "
            "prepared items or give the changed study another name")

    by_key = {item.item_key: item for item in study.items}
    study.items = [by_key.get(key) or Item(item_key=key) for key, _ in items]
    for position, (item, (_, practice)) in enumerate(zip(study.items, items, strict=True)):
        item.position = position
        item.practice = practice


def join_study(
    session: Session,
    study_name: str,
    *,
    external_id: str | None = None,
    random_state: int | random.Random | None = None,
    simulated: bool = False,
    active_window: timedelta | None = None,
) -> Participant:
    """Add a participant to the condition with the fewest active or finished participants.

    A participant counts for a condition when finished, or when active: not finished and
    seen within ``active_window`` (``ACTIVE_WINDOW``, one hour, when None). Simulated and
    real participants are balanced separately. Ties go to the first condition in study
    order, or, when ``random_state`` is given, to a tied condition drawn with it.

    The participant's item order lists the practice items first, in their fixed order,
    then the counted items shuffled (with ``random_state`` when given, otherwise with the
    operating system's random source).

    Joins are serialized: on SQLite by ``BEGIN IMMEDIATE``, on other backends by locking
    the study row, so two concurrent joins never read the same counts.

    Parameters
    ----------
    external_id : str, optional
        An id from a recruitment platform. It is stored only as a salted hash; the same id
        joining again gets its existing participant back (resume), unchanged.
    random_state : int or random.Random, optional
        Seed or generator for tie breaking and the item order.
    simulated : bool
        Marks a simulated participant (see ``studies.simulate``).

    Raises
    ------
    StudyInputError
        When the study is not in the store or has no conditions or items.
    """
    external_id_hash = hash_external_id(external_id) if external_id is not None else None
    rng = _random_generator(random_state)
    window = ACTIVE_WINDOW if active_window is None else active_window

    try:
        with write_transaction(session):
            study = _locked_study(session, study_name)
            if external_id_hash is not None:
                existing = _participant_by_external_id(session, study, external_id_hash)
                if existing is not None:
                    existing.last_seen_at = utc_now()
                    return existing
            participant = _new_participant(session, study, rng, random_state is not None,
                                           window, simulated)
            participant.external_id_hash = external_id_hash
            session.add(participant)
    except IntegrityError:
        # Another join with the same external id committed first (on backends without
        # BEGIN IMMEDIATE); that participant is the one to resume.
        if external_id_hash is None:
            raise
        study = _study_by_name(session, study_name)
        existing = _participant_by_external_id(session, study, external_id_hash)
        if existing is None:
            raise
        return existing

    logger.info("participant %d joined study %r in condition %r",
                participant.id, study_name, participant.condition.name)
    return participant


def _random_generator(random_state: int | random.Random | None) -> random.Random:
    if random_state is None:
        return random.SystemRandom()
    if isinstance(random_state, random.Random):
        return random_state
    if isinstance(random_state, int) and not isinstance(random_state, bool):
        return random.Random(random_state)
    raise StudyInputError(
        f"invalid random_state {random_state!r}; pass an int, a random.Random or None")


def _study_by_name(session: Session, study_name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == study_name))
    if study is None:
        raise StudyInputError(
            f"study {study_name!r} is not in the response store; start the app or "
            "`mviz simulate` on its study file, which adds it")
    return study


def _locked_study(session: Session, study_name: str) -> Study:
    # FOR UPDATE serializes joins on PostgreSQL and MySQL; SQLite ignores it and relies
    # on the BEGIN IMMEDIATE of write_transaction.
    statement = select(Study).where(Study.name == study_name).with_for_update()
    study = session.scalar(statement)
    if study is None:
        _study_by_name(session, study_name)
    return study


def _participant_by_external_id(
    session: Session, study: Study, external_id_hash: str
) -> Participant | None:
    return session.scalar(select(Participant).where(
        Participant.study_id == study.id, Participant.external_id_hash == external_id_hash))


def _counts_toward_balance(now: datetime, window: timedelta) -> ColumnElement[bool]:
    return or_(Participant.finished_at.is_not(None), Participant.last_seen_at >= now - window)


def _new_participant(
    session: Session,
    study: Study,
    rng: random.Random,
    random_ties: bool,
    window: timedelta,
    simulated: bool,
) -> Participant:
    conditions = list(study.conditions)
    items = list(study.items)
    if not conditions or not items:
        raise StudyInputError(
            f"study {study.name!r} has no conditions or no items in the store; synchronize "
            "it from its study file first")

    now = utc_now()
    counts = dict(session.execute(
        select(Participant.condition_id, func.count())
        .where(Participant.study_id == study.id, Participant.simulated == simulated,
               _counts_toward_balance(now, window))
        .group_by(Participant.condition_id)).all())
    fewest = min(counts.get(condition.id, 0) for condition in conditions)
    tied = [condition for condition in conditions if counts.get(condition.id, 0) == fewest]
    condition = rng.choice(tied) if random_ties else tied[0]

    practice = [item.item_key for item in items if item.practice]
    counted = [item.item_key for item in items if not item.practice]
    rng.shuffle(counted)
    return Participant(study=study, condition=condition, item_order=practice + counted,
                       simulated=simulated, created_at=now, last_seen_at=now)


def resume(session: Session, study_name: str, token: str) -> Participant:
    """Return the participant of ``study_name`` whose token is ``token``.

    Raises
    ------
    StudyInputError
        For an unknown token or a token of another study, with the same message, so
        that the message does not reveal whether a token exists elsewhere.
    """
    participant = None
    if isinstance(token, str) and token:
        participant = session.scalar(
            select(Participant).join(Study, Participant.study_id == Study.id)
            .where(Study.name == study_name, Participant.token == token))
    if participant is None:
        raise StudyInputError(_INVALID_LINK_MESSAGE.format(study=study_name))
    return participant


def _reload(session: Session, participant: Participant) -> Participant:
    """Return ``participant`` freshly read inside the current transaction."""
    identity = _participant_id(participant)
    fresh = session.get(Participant, identity, populate_existing=True)
    if fresh is None:
        raise StudyInputError(f"participant {identity} is no longer in the response store")
    return fresh


def _participant_id(participant: Participant) -> int:
    # The identity key is known without a query, even when the object's attributes
    # expired at the last commit.
    from sqlalchemy import inspect

    identity = inspect(participant).identity
    if identity is None:
        raise StudyInputError("the participant has not been stored; use join_study")
    return int(identity[0])


def give_consent(session: Session, participant: Participant) -> None:
    """Record the participant's consent (the first time only) and commit."""
    with write_transaction(session):
        participant = _reload(session, participant)
        now = utc_now()
        if participant.consented_at is None:
            participant.consented_at = now
        participant.last_seen_at = now


def touch(session: Session, participant: Participant) -> None:
    """Set the participant's ``last_seen_at`` to now and commit."""
    with write_transaction(session):
        _reload(session, participant).last_seen_at = utc_now()


def _answered_keys(session: Session, participant_id: int) -> set[str]:
    return set(session.scalars(
        select(Item.item_key).join(Response, Response.item_id == Item.id)
        .where(Response.participant_id == participant_id)))


def _first_unanswered(participant: Participant, answered: set[str]) -> str | None:
    return next((key for key in participant.item_order if key not in answered), None)


def next_item(session: Session, participant: Participant) -> str | None:
    """Return the first item key in the participant's order without a response, or None."""
    return _first_unanswered(participant, _answered_keys(session, _participant_id(participant)))


def _participant_item(session: Session, participant: Participant, item_key: str) -> Item:
    if item_key not in participant.item_order:
        raise StudyInputError(
            f"item {item_key!r} is not one of this participant's items; use next_item")
    item = session.scalar(select(Item).where(Item.study_id == participant.study_id,
                                             Item.item_key == item_key))
    if item is None:
        raise StudyInputError(f"item {item_key!r} is missing from the response store; "
                              "synchronize the study from its study file")
    return item


def _require_consent(participant: Participant) -> None:
    if participant.consented_at is None:
        raise StudyInputError(
            "the participant has not given consent; call give_consent before showing items")


def record_shown(session: Session, participant: Participant, item_key: str) -> datetime:
    """Record the first time ``item_key`` is shown to the participant; return that time.

    Showing the item again keeps the first time. Commits.

    Raises
    ------
    StudyInputError
        Without consent, or for an item that is not the participant's.
    """
    try:
        with write_transaction(session):
            participant = _reload(session, participant)
            _require_consent(participant)
            item_id = _participant_item(session, participant, item_key).id
            now = utc_now()
            participant.last_seen_at = now
            presentation = session.get(Presentation, (participant.id, item_id))
            if presentation is None:
                presentation = Presentation(participant_id=participant.id, item_id=item_id,
                                            shown_at=now)
                session.add(presentation)
            shown_at = presentation.shown_at
    except IntegrityError:
        # A concurrent request recorded it first; keep that time.
        presentation = session.get(Presentation, (_participant_id(participant), item_id))
        if presentation is None:
            raise
        shown_at = presentation.shown_at
    return shown_at


def _validate_response(
    answer: Any,
    allowed_answers: Sequence[str] | None,
    helpful_view: Any,
    confidence: Any,
    max_length: int | None,
) -> None:
    if not isinstance(answer, str) or not answer.strip():
        raise StudyInputError(f"invalid answer {answer!r}: the answer is empty; enter an answer")
    if max_length is not None and len(answer) > max_length:
        raise StudyInputError(
            f"the answer has {len(answer)} characters; shorten it to at most {max_length}")
    if allowed_answers is not None and answer not in allowed_answers:
        raise StudyInputError(f"invalid answer {answer!r}; choose one of: "
                              f"{', '.join(map(str, allowed_answers))}")
    if helpful_view is not None and helpful_view not in HELPFUL_VIEWS:
        raise StudyInputError(f"invalid helpful view {helpful_view!r}; choose "
                              f"{' or '.join(HELPFUL_VIEWS)}")
    if confidence is not None and (
            not isinstance(confidence, int) or isinstance(confidence, bool)
            or not CONFIDENCE_MIN <= confidence <= CONFIDENCE_MAX):
        raise StudyInputError(f"invalid confidence {confidence!r}; choose a whole number from "
                              f"{CONFIDENCE_MIN} to {CONFIDENCE_MAX}")


def submit_response(
    session: Session,
    participant: Participant,
    item_key: str,
    *,
    answer: str,
    allowed_answers: Sequence[str] | None = None,
    helpful_view: str | None = None,
    confidence: int | None = None,
    max_length: int | None = None,
) -> Response:
    """Store the participant's response to ``item_key`` once, and commit.

    The answer is checked after trimming surrounding whitespace (it must not be empty) and
    stored as typed; ``max_length`` applies to the text as typed. ``shown_at`` is the
    first ``record_shown`` time of the item, or now when it was never recorded.

    A second submit for an item that already has a response returns the stored response
    unchanged: the first answer wins. Two concurrent submits store one row, because the
    (participant, item) pair is unique in the table; the loser of the race rolls back and
    returns the winner's row.

    Parameters
    ----------
    allowed_answers : sequence of str, optional
        The answer must be one of these (the item's answer choices); free text when None.
    helpful_view : {"overview", "features"}, optional
        Which view helped more, asked in conditions that show R_l or R_g.
    confidence : int, optional
        From 1 (not confident) to 5 (very confident).
    max_length : int, optional
        Maximum number of characters of a free-text answer.

    Raises
    ------
    StudyInputError
        For invalid input, without consent, or when ``item_key`` is neither the
        participant's next item nor an item already answered. Nothing is written.
    """
    _validate_response(answer, allowed_answers, helpful_view, confidence, max_length)

    try:
        with write_transaction(session):
            participant = _reload(session, participant)
            _require_consent(participant)
            item_id = _participant_item(session, participant, item_key).id
            existing = _stored_response(session, participant.id, item_id)
            if existing is not None:
                return existing

            expected = _first_unanswered(participant, _answered_keys(session, participant.id))
            if item_key != expected:
                raise StudyInputError(
                    f"item {item_key!r} is not the participant's next item ({expected!r}); "
                    "answer the items in order")

            now = utc_now()
            presentation = session.get(Presentation, (participant.id, item_id))
            response = Response(
                participant_id=participant.id, item_id=item_id, answer=answer,
                helpful_view=helpful_view, confidence=confidence,
                shown_at=presentation.shown_at if presentation is not None else now,
                answered_at=now)
            session.add(response)
            participant.last_seen_at = now
            session.flush()
    except IntegrityError:
        participant_id = _participant_id(participant)
        stored = _stored_response(session, participant_id, item_id)
        if stored is None:
            raise
        logger.info("participant %d submitted item %r twice; kept the first response",
                    participant_id, item_key)
        return stored
    return response


def _stored_response(session: Session, participant_id: int, item_id: int) -> Response | None:
    return session.scalar(select(Response).where(Response.participant_id == participant_id,
                                                 Response.item_id == item_id))


def finish(session: Session, participant: Participant) -> str:
    """Mark the participant finished and return the completion code (the same on repeat).

    Raises
    ------
    StudyInputError
        When an item of the participant has no response yet.
    """
    with write_transaction(session):
        participant = _reload(session, participant)
        if participant.completion_code is not None:
            return participant.completion_code

        answered = _answered_keys(session, participant.id)
        remaining = [key for key in participant.item_order if key not in answered]
        if remaining:
            raise StudyInputError(
                f"the participant cannot finish: {len(remaining)} of "
                f"{len(participant.item_order)} items have no response yet")
        now = utc_now()
        participant.finished_at = now
        participant.last_seen_at = now
        participant.completion_code = "".join(
            secrets.choice(_COMPLETION_CODE_ALPHABET) for _ in range(COMPLETION_CODE_LENGTH))
        code = participant.completion_code
    logger.info("participant %d finished", participant.id)
    return code


def progress_by_condition(
    session: Session, study_name: str, *, active_window: timedelta | None = None
) -> list[dict[str, Any]]:
    """Return one row per condition, in study order, with the study's progress.

    Each row has ``condition``, ``joined`` (participants), ``active`` (not finished and
    seen within ``active_window``, one hour when None), ``finished``, ``responses`` (all
    responses, practice included), ``simulated`` (simulated participants among
    ``joined``) and ``target`` (participants per condition in the study file).

    Raises
    ------
    StudyInputError
        When the study is not in the store.
    """
    study = _study_by_name(session, study_name)
    window = ACTIVE_WINDOW if active_window is None else active_window
    now = utc_now()
    is_active = (Participant.finished_at.is_(None)) & (Participant.last_seen_at >= now - window)

    participant_counts = {
        row.condition_id: row for row in session.execute(
            select(Participant.condition_id,
                   func.count().label("joined"),
                   func.count().filter(is_active).label("active"),
                   func.count(Participant.finished_at).label("finished"),
                   func.count().filter(Participant.simulated.is_(True)).label("simulated"))
            .where(Participant.study_id == study.id)
            .group_by(Participant.condition_id))}
    response_counts = dict(session.execute(
        select(Participant.condition_id, func.count(Response.id))
        .join(Response, Response.participant_id == Participant.id)
        .where(Participant.study_id == study.id)
        .group_by(Participant.condition_id)).all())

    rows = []
    for condition in study.conditions:
        counts = participant_counts.get(condition.id)
        rows.append({
            "condition": condition.name,
            "joined": counts.joined if counts else 0,
            "active": counts.active if counts else 0,
            "finished": counts.finished if counts else 0,
            "responses": response_counts.get(condition.id, 0),
            "simulated": counts.simulated if counts else 0,
            "target": study.participants_per_condition,
        })
    return rows


__all__ = [
    "ACTIVE_WINDOW",
    "COMPLETION_CODE_LENGTH",
    "CONFIDENCE_MAX",
    "CONFIDENCE_MIN",
    "HELPFUL_VIEWS",
    "finish",
    "give_consent",
    "join_study",
    "next_item",
    "progress_by_condition",
    "record_shown",
    "resume",
    "submit_response",
    "sync_study",
    "touch",
]
