"""The item page of error-categorization studies.

Each item is a datapoint that the model answered wrongly. The participant sees the
picture, the question and both answers (the bundle's ``shown_answers``, which are the
stimulus of this study type), and in the MultiViz condition every stage plus the live
second-order gradient for question words of their choice (``app.live``). They pick one
error category (stored as its code from ``studies.coding.ERROR_CATEGORIES``) and a
confidence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session

from app import live, texts
from app.forms import confidence_radio, store_response
from app.views.maps import DEFAULT_OPACITY, OPACITY_KEY, outline_region, overlay_picture
from studies.coding import ERROR_CATEGORIES, ERROR_CATEGORY_CODES
from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.store import Participant

logger = logging.getLogger(__name__)

# Word maps per row of the live view.
LIVE_COLUMNS = 3


def instructions(stage_paragraphs: Sequence[str], stages: frozenset[str]) -> tuple[str, list[str]]:
    """Return the task paragraph and the paragraphs on the views of the condition.

    ``stage_paragraphs`` are the general paragraphs of the stages that ``stages`` show.
    In a condition with any stage, the paragraph on live interactions follows them.
    """
    categories = "\n".join(f"- **{ERROR_CATEGORIES[code]}**: {texts.ERROR_CATEGORY_HELP[code]}"
                           for code in ERROR_CATEGORY_CODES)
    paragraphs = list(stage_paragraphs)
    if stages:
        paragraphs.append(texts.ERROR_LIVE_INSTRUCTIONS)
    return f"{texts.ERROR_INSTRUCTIONS_TASK}\n\n{categories}", paragraphs


def render_shown_answers(bundle: Mapping[str, Any]) -> None:
    """Show the correct answer and the model's answer of the item."""
    answers = bundle["shown_answers"]
    st.markdown(texts.ERROR_ANSWERS.format(correct=answers["correct"], model=answers["model"]))


def render_error_form(session: Session, participant: Participant, bundle: Mapping[str, Any]
                      ) -> bool:
    """Draw the error category and confidence questions; return True when a response was stored."""
    item_key = bundle["item_key"]
    with st.form(key=f"error-form-{item_key}"):
        category = st.radio(
            texts.ERROR_CATEGORY_LABEL,
            list(ERROR_CATEGORY_CODES),
            index=None,
            format_func=ERROR_CATEGORIES.__getitem__,
            captions=[texts.ERROR_CATEGORY_HELP[code] for code in ERROR_CATEGORY_CODES],
            key=f"category-{item_key}",
        )
        confidence = confidence_radio(item_key)
        submitted = st.form_submit_button(texts.SUBMIT_BUTTON)
    if not submitted:
        return False

    if category is None:
        st.warning(texts.ERROR_CATEGORY_MISSING)
        return False
    if confidence is None:
        st.warning(texts.CONFIDENCE_MISSING)
        return False
    return store_response(session, participant, item_key, answer=category,
                          allowed_answers=ERROR_CATEGORY_CODES, confidence=confidence)


def render_feedback(answer: str) -> None:
    """Show the category that the participant chose for a practice item."""
    if answer in ERROR_CATEGORIES:
        st.markdown(texts.ERROR_FEEDBACK.format(category=ERROR_CATEGORIES[answer]))
    else:
        st.text(answer)


def live_request_key(item_key: str) -> str:
    """Return the session state key of the token positions last requested for an item."""
    return f"live-request-{item_key}"


def render_live_interactions(definition: StudyDefinition, bundle: Mapping[str, Any]) -> None:
    """Draw the word picker and, once requested, the live interactions of the chosen words.

    A typed word that is not in the question shows a message and computes nothing. The
    last valid request of the item stays in session state (token positions only), so its
    result stays on the page while the participant answers.
    """
    item_key = bundle["item_key"]
    tokens = [str(token) for token in bundle["tokens"]]
    request_key = live_request_key(item_key)

    st.subheader(texts.LIVE_TITLE)
    with st.form(key=f"live-form-{item_key}"):
        picked = st.multiselect(texts.LIVE_WORDS_LABEL, list(range(len(tokens))),
                                format_func=_token_labels(tokens).__getitem__,
                                key=f"live-words-{item_key}")
        typed = st.text_input(texts.LIVE_TYPED_LABEL, key=f"live-typed-{item_key}")
        requested = st.form_submit_button(texts.LIVE_BUTTON)

    if requested:
        positions, unknown = live.resolve_words(tokens, typed or "")
        chosen = sorted(set(picked) | set(positions))
        if unknown or not chosen:
            st.session_state.pop(request_key, None)
            st.warning(texts.LIVE_UNKNOWN_WORD if unknown else texts.LIVE_NO_WORDS)
            return
        st.session_state[request_key] = tuple(chosen)

    chosen = st.session_state.get(request_key)
    if not chosen:
        return
    try:
        with st.spinner(texts.LIVE_SPINNER):
            result = live.token_interactions(definition, bundle, chosen)
    except (StudyInputError, ValueError, OSError, RuntimeError) as error:
        logger.error("Live interactions of item %r of study %r failed: %s", item_key,
                     definition.name, error)
        st.error(texts.LIVE_FAILED)
        return
    _render_live_result(result)


def _token_labels(tokens: Sequence[str]) -> list[str]:
    """Return a label per token; a token that occurs twice gets its position as well."""
    return [token if tokens.count(token) == 1 else f"{token} (word {position + 1})"
            for position, token in enumerate(tokens)]


def _render_live_result(result: live.LiveInteraction) -> None:
    opacity = float(st.session_state.get(OPACITY_KEY, DEFAULT_OPACITY))
    for start in range(0, len(result.tokens), LIVE_COLUMNS):
        columns = st.columns(LIVE_COLUMNS)
        for column, token, scores in zip(columns, result.tokens[start:start + LIVE_COLUMNS],
                                         result.maps[start:start + LIVE_COLUMNS], strict=False):
            column.image(overlay_picture(result.image, scores, opacity),
                         caption=texts.LIVE_WORD_CAPTION.format(token=token))

    st.markdown(texts.LIVE_REGIONS)
    columns = st.columns(len(result.regions))
    for rank, column in enumerate(columns):
        column.image(outline_region(result.image, result.region_mask(rank)),
                     caption=texts.LIVE_REGION_CAPTION.format(rank=rank + 1))
    st.caption(texts.HOW_TO_READ["C_live"])
