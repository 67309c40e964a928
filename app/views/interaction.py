"""C, cross-modal interactions: second-order maps per question token, tokens per region."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

from app import texts
from app.views.maps import heatmap_picture, outlined_region, render_tokens


def render_token_maps(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    entries: list[Mapping[str, Any]],
    opacity: float,
    widget_key: str,
) -> None:
    """Draw the second-order map of the token the participant selects.

    Shared by C and R_l, whose ``token_to_image`` entries have the same layout:
    ``{"token_index", "token", "png", "array"}``.
    """
    if not entries:
        return
    position = st.selectbox(
        texts.QUESTION_WORD,
        range(len(entries)),
        format_func=lambda index: entries[index]["token"],
        key=widget_key,
    )
    entry = entries[position if position is not None else 0]
    st.image(heatmap_picture(bundle, arrays, entry, opacity))


def render_interaction(
    bundle: Mapping[str, Any], arrays: Mapping[str, np.ndarray], opacity: float
) -> None:
    """Draw the C stage of one item: a map per selected token, then tokens per top region."""
    stage = bundle["stages"]["C"]
    item_key = bundle["item_key"]

    entries = stage.get("token_to_image", [])
    if entries:
        render_token_maps(bundle, arrays, entries, opacity, widget_key=f"{item_key}-c-token")
        st.caption(texts.HOW_TO_READ["C_token"])

    regions = stage.get("region_to_tokens")
    if not regions:
        return
    shown = region_token_scores(bundle, arrays, regions)
    for mask, token_scores in shown:
        picture_column, token_column = st.columns([1, 2])
        picture_column.image(outlined_region(bundle, arrays, mask))
        with token_column:
            render_tokens("", bundle["tokens"], token_scores)
    if shown:
        st.caption(texts.HOW_TO_READ["C_region"])


def region_token_scores(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    regions: Mapping[str, Any],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``(mask, token scores)`` for each top region of the C stage.

    Two layouts of ``region_to_tokens`` are read:

    - ``{"array", "regions", "top_regions": [label, ...]}``: ``regions`` names a label
      map of shape (height, width), and row i of the array, of shape (regions, tokens),
      belongs to the i-th smallest label.
    - ``{"array", "grid_cell", "top_regions": [[row, col], ...]}``: square cells of
      ``grid_cell`` pixels. The array has shape (grid rows, grid columns, tokens), or
      (regions, tokens) with the cells numbered row by row.

    Returns an empty list when the arrays are missing.
    """
    scores = arrays.get(regions.get("array", ""))
    image = arrays.get(bundle["image"].get("array", ""))
    if scores is None or image is None:
        return []
    height, width = image.shape[:2]

    shown = []
    if "regions" in regions:
        labels = arrays.get(regions["regions"])
        if labels is None:
            return []
        # NOTE: this assumes the array has a row for every label of the map, as the
        # engine writes by default. A bundle with fewer rows would misalign.
        ordered_labels = np.unique(labels)
        for label in regions.get("top_regions", []):
            row = int(np.searchsorted(ordered_labels, label))
            shown.append((labels == label, np.asarray(scores[row], dtype=float)))
        return shown

    cell = int(regions["grid_cell"])
    n_columns = -(-width // cell)
    for row, col in regions.get("top_regions", []):
        mask = np.zeros((height, width), dtype=bool)
        mask[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = True
        cell_scores = scores[row, col] if scores.ndim == 3 else scores[row * n_columns + col]
        shown.append((mask, np.asarray(cell_scores, dtype=float)))
    return shown
