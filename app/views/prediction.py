"""P, multimodal prediction: the top features of the model's answer and their weights.

The weights come from the sparse linear model fit to the model's predictions. The chart
names features by number only and never names the class they belong to, because that
class is the model's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from app import texts


def feature_label(feature: int) -> str:
    """Return the name under which a feature appears in every view."""
    return f"Feature {feature}"


def prediction_table(stage: Mapping[str, Any]) -> pd.DataFrame:
    """Return one row per top feature: label, weight, value on this item, contribution."""
    rows = [
        {
            "feature": feature_label(entry["feature"]),
            "weight": float(entry["weight"]),
            "value on this item": _number(entry.get("value")),
            "contribution": _number(entry.get("contribution")),
        }
        for entry in stage.get("features", [])
    ]
    return pd.DataFrame(rows, columns=["feature", "weight", "value on this item", "contribution"])


def _number(value: Any) -> float:
    # A feature outside the item's top features has no stored value. NaN shows as empty.
    return float("nan") if value is None else float(value)


def render_prediction(bundle: Mapping[str, Any]) -> None:
    """Draw the P stage of one item: a bar chart of weights, a table and the fit's quality."""
    stage = bundle["stages"]["P"]
    table = prediction_table(stage)
    if table.empty:
        return

    st.bar_chart(table, x="feature", y="weight", horizontal=True, sort=False)
    st.dataframe(table, hide_index=True)
    st.caption(texts.HOW_TO_READ["P"])

    fit = stage.get("sparse_model")
    if fit:
        st.caption(texts.SPARSE_MODEL.format(
            fidelity=100 * float(fit["fidelity"]), n_nonzero=int(fit["n_nonzero"])))
