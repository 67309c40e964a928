"""The participant flow: link checks, consent, instructions, practice, items, completion.

Everything a participant has done lives in the response store, keyed by the token in
the URL (``&participant=<token>``), so a refresh, a reopened tab or a restarted server
resumes at the first unanswered item. Session state holds only page navigation that
may be lost: whether the instructions were read and which practice answer awaits its
feedback. It never holds an answer key.

The flow is the same for the three study types; only the item page, its instructions
and the practice feedback differ. Simulation items are drawn here, concept items by
``app.concept_pages`` and error items by ``app.error_pages``.

The page reads bundles only. It reads the answer key only through ``practice_feedback``,
on the feedback page of a practice item of a simulation study whose answer is stored.
The live second-order gradient of error items (``app.live``) is the only engine call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import streamlit as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import concept_pages, error_pages, state, texts
from app.forms import store_response
from app.views.features import FEATURE_STAGES, render_features
from app.views.maps import picture_path, render_map_controls
from app.views.overview import OVERVIEW_STAGES, render_overview
from studies.bundles import practice_feedback
from studies.definition import CONDITIONS_WITHOUT_MAPS, STAGES, StudyDefinition
from studies.errors import StudyInputError
from studies.participation import (
    finish,
    give_consent,
    join_study,
    next_item,
    record_shown,
    resume,
    touch,
)
from studies.store import Condition, Item, Participant, Response

logger = logging.getLogger(__name__)

# Query parameters of a participant link.
STUDY_PARAMETER = "study"
PARTICIPANT_PARAMETER = "participant"
EXTERNAL_ID_PARAMETERS = ("PROLIFIC_PID", "external_id")
FORBIDDEN_PARAMETERS = ("condition",)
# Study types whose items these pages can show.
SERVED_STUDY_TYPES = ("simulation", "concept", "error")

# Session state keys. Both contain navigation only (see the module docstring).
INSTRUCTIONS_READ_KEY = "instructions-read-by"
FEEDBACK_ITEM_KEY = "practice-feedback-item"

# Stages drawn as coloured maps or highlighted words, and those of them that the
# opacity slider redraws (R_g's maps are stored pictures of other datapoints).
MAP_STAGES = frozenset({"U", "C", "R_l", "R_g"})
REDRAWN_STAGES = frozenset({"U", "C", "R_l"})


def render() -> None:
    """Draw the participant page for the current URL.

    Every link problem (no study, unknown study, a ``condition`` parameter, an invalid
    participant token) shows a message and writes nothing to the store.
    """
    params = st.query_params
    if any(name in params for name in FORBIDDEN_PARAMETERS):
        st.error(texts.CONDITION_REJECTED)
        return

    study_name = params.get(STUDY_PARAMETER)
    if not study_name:
        st.error(texts.MISSING_STUDY)
        return
    try:
        definition = state.load_definition(study_name)
    except StudyInputError as error:
        logger.info("Rejected a participant link: %s", error)
        st.error(texts.UNKNOWN_STUDY)
        return
    if definition.type not in SERVED_STUDY_TYPES:
        logger.warning("Study %r is a %s study, which the participant pages do not serve",
                       study_name, definition.type)
        st.error(texts.STUDY_TYPE_NOT_SERVED)
        return
    try:
        item_keys, practice_keys = state.study_items(study_name)
    except StudyInputError as error:
        logger.warning("Study %r is not ready: %s", study_name, error)
        st.error(texts.STUDY_NOT_READY)
        return

    engine = state.store_engine()
    try:
        state.ensure_study_synced(engine, definition, item_keys, practice_keys)
    except StudyInputError as error:
        logger.error("Study %r cannot be synchronized with the response store: %s",
                     study_name, error)
        st.error(texts.STUDY_NOT_READY)
        return
    with Session(engine) as session:
        participant = _identify_participant(session, definition)
        if participant is None:
            return
        touch(session, participant)
        _render_step(session, definition, participant, practice_keys)


def _identify_participant(session: Session, definition: StudyDefinition) -> Participant | None:
    """Resume the participant of the URL's token, or join a new one and put its token in the URL."""
    params = st.query_params
    token = params.get(PARTICIPANT_PARAMETER)
    if token:
        try:
            return resume(session, definition.name, token)
        except StudyInputError as error:
            logger.info("Rejected a participant token for study %r: %s", definition.name, error)
            st.error(texts.INVALID_PARTICIPANT)
            return None

    external_id = next((params[name] for name in EXTERNAL_ID_PARAMETERS if params.get(name)), None)
    try:
        participant = join_study(session, definition.name, external_id=external_id)
    except StudyInputError as error:
        logger.warning("A participant could not join study %r: %s", definition.name, error)
        st.error(texts.JOIN_FAILED.format(reason=error))
        return None
    st.query_params[PARTICIPANT_PARAMETER] = participant.token
    logger.info("Participant %d joined study %r", participant.id, definition.name)
    return participant


def _render_step(
    session: Session,
    definition: StudyDefinition,
    participant: Participant,
    practice_keys: list[str],
) -> None:
    """Draw the page of the participant's current step."""
    if participant.finished_at is not None:
        _render_completion(session, definition, participant)
        return
    if participant.consented_at is None:
        _render_consent(session, definition, participant)
        return

    item_key = next_item(session, participant)
    if item_key is None:
        _render_completion(session, definition, participant)
        return

    feedback_item = st.session_state.get(FEEDBACK_ITEM_KEY)
    if feedback_item is not None and feedback_item in practice_keys:
        _render_practice_feedback(session, definition, participant, feedback_item)
        return

    is_first_item = item_key == participant.item_order[0]
    if is_first_item and st.session_state.get(INSTRUCTIONS_READ_KEY) != participant.token:
        _render_instructions(definition, _condition_name(session, participant), practice_keys,
                             participant, show_button=True)
        return

    _render_item(session, definition, participant, item_key, practice_keys)


def _condition_name(session: Session, participant: Participant) -> str:
    return session.execute(
        select(Condition.name).where(Condition.id == participant.condition_id)
    ).scalar_one()


def _render_consent(
    session: Session, definition: StudyDefinition, participant: Participant
) -> None:
    st.title(texts.CONSENT_TITLE)
    st.markdown(texts.CONSENT_BY_TYPE[definition.type])
    agreed = st.checkbox(texts.CONSENT_CHECKBOX, key="consent-checkbox")
    if st.button(texts.CONSENT_BUTTON, key="consent-continue"):
        if not agreed:
            st.warning(texts.CONSENT_MISSING)
            return
        give_consent(session, participant)
        st.rerun()


def _ordered_stages(stages: frozenset[str]) -> list[str]:
    return [stage for stage in STAGES if stage in stages]


def _render_instructions(
    definition: StudyDefinition,
    condition: str,
    practice_keys: list[str],
    participant: Participant,
    *,
    show_button: bool,
) -> None:
    """Explain the task and the views of the participant's condition, and no other view."""
    stages = definition.condition_stages(condition)
    n_counted = len(participant.item_order) - len(practice_keys)
    stage_paragraphs = [texts.STAGE_INSTRUCTIONS[stage] for stage in _ordered_stages(stages)]
    if definition.type == "concept":
        task, stage_paragraphs = concept_pages.instructions(
            stages, with_maps=condition not in CONDITIONS_WITHOUT_MAPS)
    elif definition.type == "error":
        task, stage_paragraphs = error_pages.instructions(stage_paragraphs, stages)
    else:
        task = texts.INSTRUCTIONS_TASK

    if show_button:
        st.title(texts.INSTRUCTIONS_TITLE)
    st.markdown(task)
    if practice_keys:
        practice = (texts.INSTRUCTIONS_PRACTICE if definition.type == "simulation"
                    else texts.INSTRUCTIONS_PRACTICE_UNSCORED)
        count = len(practice_keys)
        items = "1 practice item" if count == 1 else f"{count} practice items"
        st.markdown(practice.format(practice_items=items))
    st.markdown(texts.INSTRUCTIONS_COUNTED.format(n_counted=n_counted))
    for paragraph in stage_paragraphs:
        st.markdown(paragraph)
    if stages & MAP_STAGES:
        st.markdown(texts.INSTRUCTIONS_COLORS)
    if stages & REDRAWN_STAGES:
        st.markdown(texts.INSTRUCTIONS_SLIDER)
    if _asks_helpful(definition, condition):
        st.markdown(texts.INSTRUCTIONS_HELPFUL)

    label = texts.INSTRUCTIONS_BUTTON_PRACTICE if practice_keys else texts.INSTRUCTIONS_BUTTON
    if show_button and st.button(label, key="instructions-continue"):
        st.session_state[INSTRUCTIONS_READ_KEY] = participant.token
        st.rerun()


def _render_practice_feedback(
    session: Session,
    definition: StudyDefinition,
    participant: Participant,
    item_key: str,
) -> None:
    """Show the participant's answer to a practice item, and the model's in a simulation study."""
    answer = _stored_answer(session, participant, item_key)
    if answer is None:
        # Only an answered item may show feedback; drop a stale navigation value.
        del st.session_state[FEEDBACK_ITEM_KEY]
        st.rerun()

    st.title(texts.FEEDBACK_TITLE)
    if definition.type == "concept":
        concept_pages.render_feedback(answer)
    elif definition.type == "error":
        error_pages.render_feedback(answer)
    else:
        prediction = practice_feedback(definition.name, item_key)
        st.markdown(texts.FEEDBACK.format(answer=answer, prediction=prediction))
    st.caption(texts.FEEDBACK_NOTE)
    if st.button(texts.FEEDBACK_BUTTON, key=f"feedback-continue-{item_key}"):
        del st.session_state[FEEDBACK_ITEM_KEY]
        st.rerun()


def _stored_answer(session: Session, participant: Participant, item_key: str) -> str | None:
    return session.execute(
        select(Response.answer)
        .join(Item, Response.item_id == Item.id)
        .where(Response.participant_id == participant.id, Item.item_key == item_key)
    ).scalar_one_or_none()


def _render_item(
    session: Session,
    definition: StudyDefinition,
    participant: Participant,
    item_key: str,
    practice_keys: list[str],
) -> None:
    """Draw one item: progress, the item and its response form, and the views.

    After a stored response the page moves on, through the feedback page for a practice item.
    """
    condition = _condition_name(session, participant)
    stages = definition.condition_stages(condition)
    with_maps = condition not in CONDITIONS_WITHOUT_MAPS
    bundle = state.bundle(definition.name, item_key)
    arrays = state.bundle_arrays(definition.name, item_key)
    record_shown(session, participant, item_key)

    _render_progress(participant, item_key, practice_keys)
    with st.expander(texts.INSTRUCTIONS_AGAIN):
        _render_instructions(definition, condition, practice_keys, participant, show_button=False)

    item_column, views_column = st.columns([1, 2])
    if definition.type == "concept":
        with item_column:
            stored = concept_pages.render_concept_form(session, participant, bundle)
        with views_column:
            concept_pages.render_feature_views(bundle, arrays, stages, with_maps=with_maps)
    else:
        with item_column:
            st.image(picture_path(bundle, bundle["image"]["png"]))
            st.markdown(texts.QUESTION.format(question=bundle["question"]))
            if definition.type == "error":
                error_pages.render_shown_answers(bundle)
                stored = error_pages.render_error_form(session, participant, bundle)
            else:
                stored = _render_answer_form(session, definition, participant, condition, bundle)
        with views_column:
            _render_views(bundle, arrays, stages, with_maps=with_maps)
            if definition.type == "error" and stages:
                error_pages.render_live_interactions(definition, bundle)

    if stored:
        if item_key in practice_keys:
            st.session_state[FEEDBACK_ITEM_KEY] = item_key
        st.rerun()


def _render_progress(participant: Participant, item_key: str, practice_keys: list[str]) -> None:
    # Items are answered in the participant's order, so every counted item before the
    # current one is answered and none after it is.
    counted = [key for key in participant.item_order if key not in practice_keys]
    answered = counted.index(item_key) if item_key in counted else 0
    st.progress(answered / len(counted) if counted else 0.0,
                text=texts.PROGRESS.format(answered=answered, total=len(counted)))
    if item_key in practice_keys:
        st.subheader(texts.PRACTICE_HEADER.format(
            number=practice_keys.index(item_key) + 1, total=len(practice_keys)))
    else:
        st.subheader(texts.ITEM_HEADER.format(number=answered + 1, total=len(counted)))


def answer_options(bundle: Mapping[str, Any]) -> list[str]:
    """Return the item's answer choices in sorted order.

    Sorting makes the order a function of the set of choices alone, so it cannot tell
    which choice is the model's prediction or the ground truth, whatever order the
    bundle lists them in.
    """
    return sorted(str(choice) for choice in bundle["choices"])


def _render_answer_form(
    session: Session,
    definition: StudyDefinition,
    participant: Participant,
    condition: str,
    bundle: Mapping[str, Any],
) -> bool:
    """Draw the answer form of a simulation item; return True when a response was stored."""
    item_key = bundle["item_key"]
    choices = answer_options(bundle)
    asks_helpful = _asks_helpful(definition, condition)

    with st.form(key=f"answer-form-{item_key}"):
        answer = st.radio(texts.ANSWER_LABEL, choices, index=None, key=f"answer-{item_key}")
        helpful = None
        if asks_helpful:
            helpful = st.radio(texts.HELPFUL_LABEL, list(texts.HELPFUL_OPTIONS), index=None,
                               key=f"helpful-{item_key}")
        submitted = st.form_submit_button(texts.SUBMIT_BUTTON)
    if not submitted:
        return False

    if answer is None:
        st.warning(texts.ANSWER_MISSING)
        return False
    if asks_helpful and helpful is None:
        st.warning(texts.HELPFUL_MISSING)
        return False
    return store_response(
        session, participant, item_key,
        answer=answer,
        allowed_answers=choices,
        helpful_view=texts.HELPFUL_OPTIONS[helpful] if helpful is not None else None,
    )


def _asks_helpful(definition: StudyDefinition, condition: str) -> bool:
    """Return whether the condition asks which view helped more (simulation studies only)."""
    return definition.type == "simulation" and condition in definition.feature_conditions


def _render_views(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, Any],
    stages: frozenset[str],
    *,
    with_maps: bool,
) -> None:
    """Draw the Overview and Features views that the condition shows, in tabs when both."""
    overview = stages & OVERVIEW_STAGES
    features = stages & FEATURE_STAGES
    if not overview and not features:
        return

    opacity = render_map_controls(bundle) if stages & REDRAWN_STAGES else 0.5
    if overview and features:
        overview_tab, features_tab = st.tabs([texts.OVERVIEW_TAB, texts.FEATURES_TAB])
        with overview_tab:
            render_overview(bundle, arrays, overview, opacity)
        with features_tab:
            render_features(bundle, arrays, features, opacity, with_maps=with_maps)
    elif overview:
        st.subheader(texts.OVERVIEW_TAB)
        render_overview(bundle, arrays, overview, opacity)
    else:
        st.subheader(texts.FEATURES_TAB)
        render_features(bundle, arrays, features, opacity, with_maps=with_maps)


def _render_completion(
    session: Session, definition: StudyDefinition, participant: Participant
) -> None:
    code = finish(session, participant)
    st.title(texts.COMPLETION_TITLE)
    st.markdown(texts.COMPLETION)
    st.code(code, language=None)
    link = definition.completion_link(code)
    if link is not None:
        st.link_button(texts.COMPLETION_LINK, link)
    st.caption(texts.COMPLETION_NOTE)
