"""The item page of concept-labelling studies: one feature, a free-text concept, a confidence.

The participant's text is stored as typed, without the surrounding whitespace, and is
shown back only through ``st.text``, so neither Markdown nor HTML in it is ever
interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st
from sqlalchemy.orm import Session

from app import texts
from app.forms import confidence_radio, store_response
from app.views.features import render_examples, render_local
from app.views.maps import render_map_controls
from app.views.prediction import feature_label
from studies.coding import CONCEPT_MAX_LENGTH
from studies.store import Participant


def instructions(stages: frozenset[str], *, with_maps: bool) -> tuple[str, list[str]]:
    """Return the task paragraph and the paragraphs on the views that ``stages`` show."""
    paragraphs = [texts.CONCEPT_STAGE_INSTRUCTIONS[stage] for stage in ("R_l", "R_g")
                  if stage in stages]
    if "R_g" in stages and with_maps:
        paragraphs.append(texts.CONCEPT_RG_MAPS)
    return texts.CONCEPT_INSTRUCTIONS_TASK, paragraphs


def render_feature_views(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    stages: frozenset[str],
    *,
    with_maps: bool,
) -> None:
    """Draw R_l of the bundle's feature and, when ``stages`` has it, R_g.

    Parameters
    ----------
    with_maps : bool
        Whether R_g's datapoints carry their U maps (False shows plain pictures).
    """
    opacity = render_map_controls(bundle)
    local = bundle["R_l"]
    # render_local reads the datapoint's picture and tokens from the top level of a
    # datapoint bundle, but a concept bundle keeps them inside R_l.
    datapoint = {"dir": bundle["dir"], "item_key": bundle["item_key"],
                 "image": local["image"], "tokens": local["tokens"]}
    st.markdown(texts.CONCEPT_LOCAL)
    render_local(datapoint, arrays, {**local, "feature": bundle["feature"]}, opacity)
    st.caption(texts.RG_ACTIVATION.format(activation=float(local["activation"])))

    if "R_g" in stages and "R_g" in bundle:
        render_examples(bundle["R_g"], bundle, with_maps=with_maps)


def render_concept_form(session: Session, participant: Participant, bundle: Mapping[str, Any]
                        ) -> bool:
    """Draw the concept question; return True when a valid response was stored.

    An empty or whitespace-only text, or a missing confidence, shows a message and stores
    nothing. The typed text stays in the box.
    """
    item_key = bundle["item_key"]
    st.subheader(feature_label(int(bundle["feature"])))
    with st.form(key=f"concept-form-{item_key}"):
        text = st.text_input(texts.CONCEPT_LABEL, max_chars=CONCEPT_MAX_LENGTH,
                             help=texts.CONCEPT_HELP, key=f"concept-{item_key}")
        confidence = confidence_radio(item_key)
        submitted = st.form_submit_button(texts.SUBMIT_BUTTON)
    if not submitted:
        return False

    concept = (text or "").strip()
    if not concept:
        st.warning(texts.CONCEPT_MISSING)
        return False
    if confidence is None:
        st.warning(texts.CONFIDENCE_MISSING)
        return False
    return store_response(session, participant, item_key, answer=concept,
                          confidence=confidence, max_length=CONCEPT_MAX_LENGTH)


def render_feedback(answer: str) -> None:
    """Show the participant's concept of a practice item, as plain text."""
    st.markdown(texts.CONCEPT_FEEDBACK)
    st.text(answer)
