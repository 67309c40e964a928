"""Form pieces shared by the concept and error item pages."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session

from app import texts
from studies.errors import StudyInputError
from studies.participation import submit_response
from studies.store import Participant

logger = logging.getLogger(__name__)


def confidence_radio(item_key: str) -> int | None:
    """Draw the 1-5 confidence question (nothing preselected); return the choice or None."""
    return st.radio(
        texts.CONFIDENCE_LABEL,
        list(texts.CONFIDENCE_OPTIONS),
        index=None,
        format_func=texts.CONFIDENCE_OPTIONS.__getitem__,
        horizontal=True,
        key=f"confidence-{item_key}",
    )


def store_response(
    session: Session, participant: Participant, item_key: str, **response: Any
) -> bool:
    """Store a response through ``submit_response``; return whether it was stored.

    An invalid response shows the validation message on the page and stores nothing.
    """
    try:
        submit_response(session, participant, item_key, **response)
    except StudyInputError as error:
        logger.warning("Rejected a response of participant %d to item %r: %s",
                       participant.id, item_key, error)
        st.error(str(error))
        return False
    return True
