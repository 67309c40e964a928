"""Drawing helpers shared by the views: picture paths, heatmap redraws, token highlights.

A bundle stores every heatmap twice: as a PNG drawn at opacity 0.5 and as a score array.
The views redraw a map from its array at the opacity the participant picks and fall back
to the PNG when an array is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import texts
from engine.render import colorize, overlay_heatmap, token_highlight_html, upscale

# Size in pixels of the longer side of a redrawn map, the size of the bundle PNGs.
DISPLAY_SIZE = 256
DEFAULT_OPACITY = 0.5
OPACITY_KEY = "map-opacity"
# Colour of the outline around a picture region (RGB, uint8).
OUTLINE_COLOR = np.array([255, 200, 0], dtype=np.uint8)


def picture_path(bundle: Mapping[str, Any], name: str) -> str:
    """Return the path of one of the bundle's PNG files."""
    return str(Path(bundle["dir"]) / name)


def render_map_controls(bundle: Mapping[str, Any]) -> float:
    """Draw the opacity slider and the colour legend; return the chosen opacity.

    The slider uses the same key on every item, so the participant's choice carries
    over from item to item.
    """
    slider_column, legend_column = st.columns([2, 1])
    opacity = slider_column.slider(
        texts.OPACITY_SLIDER, min_value=0.0, max_value=1.0, value=DEFAULT_OPACITY, step=0.1,
        key=OPACITY_KEY,
    )
    legend = Path(bundle["dir"]) / "legend.png"
    if legend.is_file():
        legend_column.image(str(legend), caption=texts.LEGEND_CAPTION)
    else:
        legend_column.image(_legend_bar(), caption=texts.LEGEND_CAPTION)
    return float(opacity)


def _legend_bar() -> np.ndarray:
    """Return a bar of the heatmap colours from -1 (left) to +1 (right), uint8 RGB."""
    scores = np.repeat(np.linspace(-1.0, 1.0, DISPLAY_SIZE)[None, :], 16, axis=0)
    return np.round(colorize(scores) * 255.0).astype(np.uint8)


def heatmap_picture(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    entry: Mapping[str, str],
    opacity: float,
) -> np.ndarray | str:
    """Return a map over the item's picture, redrawn at ``opacity`` when its arrays exist.

    Parameters
    ----------
    entry : mapping
        A map entry of the bundle: ``{"png": file name, "array": name in arrays.npz}``.

    Returns
    -------
    ndarray of shape (DISPLAY_SIZE, DISPLAY_SIZE, 3), uint8, or str
        The redrawn map, or the path of the stored PNG when an array is missing.
    """
    image = _item_image(bundle, arrays)
    scores = arrays.get(entry.get("array", ""))
    if image is None or scores is None or scores.shape != image.shape[:2]:
        return picture_path(bundle, entry["png"])
    return overlay_picture(image, scores, opacity)


def overlay_picture(image: np.ndarray, scores: np.ndarray, opacity: float) -> np.ndarray:
    """Return ``scores`` drawn over ``image`` at ``opacity``, enlarged for display.

    Parameters
    ----------
    image : ndarray of shape (height, width, 3), floats in [0, 1]
    scores : ndarray of shape (height, width)

    Returns
    -------
    ndarray of shape (factor * height, factor * width, 3), uint8
        With ``factor = DISPLAY_SIZE // max(height, width)``, at least 1.
    """
    overlay = overlay_heatmap(image, scores, opacity=opacity)
    return upscale(overlay, _display_factor(overlay))


def outlined_region(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    mask: np.ndarray,
) -> np.ndarray | str:
    """Return the item's picture with the region ``mask`` outlined.

    Parameters
    ----------
    mask : ndarray of shape (height, width), bool
        The region's pixels on the item's picture.

    Returns
    -------
    ndarray of shape (DISPLAY_SIZE, DISPLAY_SIZE, 3), uint8, or str
        The outlined picture, or the path of the plain PNG when the picture's array is
        missing or ``mask`` does not match it.
    """
    image = _item_image(bundle, arrays)
    if image is None or mask.shape != image.shape[:2]:
        return picture_path(bundle, bundle["image"]["png"])
    return outline_region(image, mask)


def outline_region(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``image`` enlarged for display with the region ``mask`` outlined.

    Parameters
    ----------
    image : ndarray of shape (height, width, 3), floats in [0, 1]
    mask : ndarray of shape (height, width), bool

    Returns
    -------
    ndarray of shape (factor * height, factor * width, 3), uint8
        With ``factor = DISPLAY_SIZE // max(height, width)``, at least 1.
    """
    factor = _display_factor(image)
    picture = upscale(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8), factor)
    region = upscale(np.asarray(mask, dtype=bool), factor)

    # Peel the region's border ring off one pixel at a time. The pixels peeled off
    # form an outline half a picture pixel wide.
    interior = region.copy()
    for _ in range(max(1, factor // 2)):
        padded = np.pad(interior, 1, constant_values=False)
        interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                    & padded[1:-1, :-2] & padded[1:-1, 2:])
    picture[region & ~interior] = OUTLINE_COLOR
    return picture


def render_tokens(label: str, tokens: Sequence[str], scores: Sequence[float]) -> None:
    """Show a question with each token coloured by its score.

    ``token_highlight_html`` escapes every token, so dataset text cannot inject HTML.
    """
    highlighted = token_highlight_html(list(tokens), np.asarray(scores, dtype=float))
    st.markdown(f"{label} {highlighted}", unsafe_allow_html=True)


def _item_image(bundle: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    image = arrays.get(bundle["image"].get("array", ""))
    if image is None:
        return None
    image = np.asarray(image)
    if image.dtype.kind in "ui":
        return image.astype(float) / 255.0
    return image.astype(float)


def _display_factor(image: np.ndarray) -> int:
    return max(1, DISPLAY_SIZE // max(image.shape[:2]))
