"""The "Overview" view: U and C of one item, as in the MultiViz interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.views.interaction import render_interaction
from app.views.unimodal import render_unimodal

OVERVIEW_STAGES = frozenset({"U", "C"})


def render_overview(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    stages: frozenset[str],
    opacity: float,
) -> None:
    """Draw the Overview stages among ``stages`` that the bundle contains."""
    present = bundle["stages"]
    if "U" in stages and "U" in present:
        render_unimodal(bundle, arrays, opacity)
    if "C" in stages and "C" in present:
        render_interaction(bundle, arrays, opacity)
