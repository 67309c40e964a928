"""U, unimodal importance: image maps by gradient and LIME, and token highlights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

from app import texts
from app.views.maps import heatmap_picture, render_tokens

# (label shown to the participant, key in the bundle's U stage)
IMAGE_METHODS = (("Gradient", "image_gradient"), ("LIME", "image_lime"))
TOKEN_METHODS = (("Gradient", "token_gradient"), ("LIME", "token_lime"))


def render_unimodal(
    bundle: Mapping[str, Any], arrays: Mapping[str, np.ndarray], opacity: float
) -> None:
    """Draw the U stage of one item: a map per method over the picture, then the question."""
    stage = bundle["stages"]["U"]

    methods = [(label, stage[key]) for label, key in IMAGE_METHODS if key in stage]
    if methods:
        for column, (label, entry) in zip(st.columns(len(methods)), methods, strict=True):
            column.image(heatmap_picture(bundle, arrays, entry, opacity), caption=label)
        st.caption(texts.HOW_TO_READ["U_image"])

    token_methods = [(label, stage[key]) for label, key in TOKEN_METHODS if key in stage]
    for label, scores in token_methods:
        render_tokens(f"**{label}:**", bundle["tokens"], scores)
    if token_methods:
        st.caption(texts.HOW_TO_READ["U_text"])
