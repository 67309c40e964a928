"""The "Features" view: P's chart, then R_l and R_g for each top feature.

As in the MultiViz interface, the features are the same in every stage (the top
features of the model's answer), so each one gets a single section that gathers what
the participant's condition shows about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

from app import texts
from app.views.interaction import render_token_maps
from app.views.maps import heatmap_picture, picture_path, render_tokens
from app.views.prediction import feature_label, render_prediction

FEATURE_STAGES = frozenset({"R_l", "R_g", "P"})


def render_features(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    stages: frozenset[str],
    opacity: float,
    *,
    with_maps: bool = True,
) -> None:
    """Draw the Features stages among ``stages`` that the bundle contains.

    Parameters
    ----------
    with_maps : bool
        Whether R_g shows the U maps of its datapoints (False for concept conditions
        that show the datapoints alone).
    """
    present = bundle["stages"]
    if "P" in stages and "P" in present:
        render_prediction(bundle)

    local = _by_feature(present.get("R_l", [])) if "R_l" in stages else {}
    examples = _by_feature(present.get("R_g", [])) if "R_g" in stages else {}
    order = list(dict.fromkeys([*local, *examples]))
    for position, feature in enumerate(order):
        title = feature_label(feature)
        if feature in local:
            title += f" (responds {float(local[feature]['activation']):.2f} to this item)"
        with st.expander(title, expanded=position == 0):
            if feature in local:
                render_local(bundle, arrays, local[feature], opacity)
            if feature in examples:
                render_examples(examples[feature], bundle, with_maps=with_maps)


def _by_feature(entries: list[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(entry["feature"]): entry for entry in entries}


def render_local(
    bundle: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    entry: Mapping[str, Any],
    opacity: float,
) -> None:
    """Draw R_l of one feature: U and C of the bundle's datapoint with the feature as target.

    ``bundle`` provides the datapoint (``"image"``, ``"tokens"``, ``"dir"``, ``"item_key"``)
    and ``entry`` is one feature's R_l entry of the bundle format.
    """
    map_column, token_column = st.columns(2)
    if "image_gradient" in entry:
        map_column.image(heatmap_picture(bundle, arrays, entry["image_gradient"], opacity))
    with token_column:
        if "token_gradient" in entry:
            render_tokens("", bundle["tokens"], entry["token_gradient"])
        render_token_maps(
            bundle, arrays, entry.get("token_to_image", []), opacity,
            widget_key=f"{bundle['item_key']}-f{entry['feature']}-token",
        )
    st.caption(texts.HOW_TO_READ["R_l"])


def render_examples(
    entry: Mapping[str, Any], bundle: Mapping[str, Any], *, with_maps: bool
) -> None:
    """Draw R_g of one feature: the pool datapoints with its largest activations.

    The datapoints with the smallest activations follow when ``entry`` has them. Their
    maps are stored pictures, shown only when ``with_maps`` is true.
    """
    st.markdown(texts.RG_TOP)
    for example in entry.get("top", []):
        _render_example(example, bundle, with_maps=with_maps)
    st.caption(texts.HOW_TO_READ["R_g"])

    bottom = entry.get("bottom", [])
    if bottom:
        st.markdown(texts.RG_BOTTOM)
        for example in bottom:
            _render_example(example, bundle, with_maps=with_maps)
        st.caption(texts.HOW_TO_READ["R_g_bottom"])


def _render_example(
    example: Mapping[str, Any], bundle: Mapping[str, Any], *, with_maps: bool
) -> None:
    picture_column, map_column, text_column = st.columns([1, 1, 2])
    picture_column.image(picture_path(bundle, example["png"]))
    if with_maps and "image_gradient" in example:
        map_column.image(picture_path(bundle, example["image_gradient"]["png"]))
    with text_column:
        if with_maps and "token_gradient" in example:
            render_tokens("", example["tokens"], example["token_gradient"])
        else:
            st.markdown(texts.RG_QUESTION.format(question=example["question"]))
        st.caption(texts.RG_ACTIVATION.format(activation=float(example["activation"])))
