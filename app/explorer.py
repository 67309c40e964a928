"""The researcher's explorer: every stage of any datapoint, computed live by the engine.

The researcher picks a split and an index of the study's dataset. The engine explains
the datapoint with the study's settings (``engine.explain.explain_item``), the result is
written as a bundle under ``<data>/studies/<study>/explorer/`` and drawn with the same
views as the participant pages, with the model's answer, the ground truth and the class
of P named. Participants never reach this page.

The app fits nothing: the model's outputs on the pool split and the P fit must already be
cached by ``mviz prepare``. An explanation is cached per (study, split, index) for the
life of the server process, so a rerun draws it again without computing it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from app import texts
from app.views.features import render_features
from app.views.interaction import render_interaction
from app.views.maps import picture_path, render_map_controls
from app.views.prediction import render_prediction
from app.views.unimodal import render_unimodal
from engine.datasets import DATASETS
from studies import paths
from studies.bundles import load_arrays, load_bundle
from studies.definition import SPLITS, STAGES, StudyDefinition
from studies.errors import StudyInputError
from studies.selection import item_key

if TYPE_CHECKING:
    # studies.context imports torch and the model code, which take seconds to import;
    # the explorer imports it only when a datapoint is explained.
    from studies.context import ModelContext

logger = logging.getLogger(__name__)

# Sub-folder of a study's data folder that contains the explorer's bundles, apart from
# the study's own bundles.
EXPLORER_FOLDER = "explorer"
# Explanations kept in memory per server process; older ones are computed again.
MAX_CACHED_EXPLANATIONS = 32
TOP_ANSWERS = 3

SPLIT_KEY = "explorer-split"
INDEX_KEY = "explorer-index"
# The (study, split, index) triples the researcher asked to explain in this session; they
# are drawn again without a click when picked again.
REQUESTS_KEY = "explorer-requests"

EXPLAIN_BUTTON = "Explain this datapoint"
NOT_COMPUTED = (
    "Press **{button}** to compute every stage of this datapoint with the study's settings. "
    "The first time takes from seconds to minutes, depending on `lime_samples` and "
    "`rg_examples` in the study file; later views of the same datapoint are immediate."
)
MISSING_CACHE = (
    "The explorer needs the cached outputs and P fit of model {model!r} ({missing}), and "
    "the app does not fit anything. Run `mviz prepare` on the study file first."
)


@dataclass
class ExplorerView:
    """A datapoint's explanation, as a bundle the views can draw, and its answer key.

    Attributes
    ----------
    bundle : dict
        The bundle's ``bundle.json`` content with its folder under ``"dir"``; every stage.
    arrays : dict of str to ndarray
        The bundle's arrays.
    prediction, ground_truth : str
        The model's answer and the dataset's answer.
    explained_class : str
        The class that U, C and P explain (the model's answer).
    sparse_prediction : str
        The answer of P's sparse linear model on this datapoint.
    top_answers : list of (str, float)
        The model's most probable answers and their softmax probabilities.
    """

    bundle: dict[str, Any]
    arrays: dict[str, np.ndarray]
    prediction: str
    ground_truth: str
    explained_class: str
    sparse_prediction: str
    top_answers: list[tuple[str, float]]


def explorer_study_name(study_name: str) -> str:
    """Return the name under which ``studies.bundles`` stores a study's explorer bundles.

    Bundle paths are ``<data>/studies/<name>/bundles/<item>``, so this name puts the
    explorer's bundles in ``<data>/studies/<study>/explorer/bundles/``.
    """
    return f"{study_name}/{EXPLORER_FOLDER}"


def explain_datapoint(
    definition: StudyDefinition, context: ModelContext, split: str, index: int
) -> ExplorerView:
    """Explain one datapoint with every stage and the study's settings, and write its bundle.

    Raises
    ------
    StudyInputError
        For an index out of the split's range, or when the caches of ``mviz prepare``
        are missing (nothing is fit here).
    """
    from engine.explain import explain_item
    from studies.context import explain_config
    from studies.item_bundle import write_item_bundle

    dataset = context.dataset(split)
    check_index(dataset, split, index, definition.dataset)
    settings = definition.explanations
    missing = context.missing_caches(settings.sparse_fit_to)
    if missing:
        raise StudyInputError(MISSING_CACHE.format(
            model=definition.model, missing=", ".join(str(path) for path in missing)))

    sparse_fit = context.sparse_fit(settings.sparse_fit_to)
    pool_datapoints, pool_activations = context.pool(settings.rg_pool, settings.seed)
    config = explain_config(settings)
    datapoint = dataset.datapoint(index)
    logger.info("Explaining %s datapoint %d for the explorer of study %r", split, index,
                definition.name)
    explanation = explain_item(context.model, datapoint, sparse_fit=sparse_fit,
                               pool_datapoints=pool_datapoints,
                               pool_activations=pool_activations, config=config)

    key = item_key(split, index)
    question = dataset[index]
    header = {"study": definition.name, "item_key": key, "practice": False,
              "question": question.question, "question_type": question.question_type}
    name = explorer_study_name(definition.name)
    write_item_bundle(name, key, header, context.model, datapoint, explanation, STAGES,
                      pool_datapoints)

    labels = context.model.label_names
    logits = np.asarray(explanation.logits, dtype=float)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")[:TOP_ANSWERS]
    return ExplorerView(
        bundle=load_bundle(name, key),
        arrays=load_arrays(name, key),
        prediction=labels[explanation.predicted_class],
        ground_truth=labels[dataset.label(index)],
        explained_class=labels[explanation.target_class],
        sparse_prediction=labels[explanation.prediction.sparse_prediction],
        top_answers=[(labels[i], float(probabilities[i])) for i in order],
    )


def check_index(dataset, split: str, index: int, dataset_name: str) -> None:
    """Raise ``StudyInputError`` unless ``index`` is a datapoint of the split."""
    if not 0 <= index < len(dataset):
        raise StudyInputError(
            f"Index {index} is out of range: the {split} split of {dataset_name} has indices "
            f"0 to {len(dataset) - 1}. Enter an index in that range.")


@st.cache_resource(show_spinner=False)
def _dataset(dataset_name: str, split: str):
    return DATASETS[dataset_name](split)


@st.cache_resource(show_spinner=False)
def _model_context(model_name: str, dataset_name: str, weights: str | None,
                   data_dir: str) -> ModelContext:
    # The data folder is part of the key because the context's caches live under it.
    from studies.context import ModelContext

    return ModelContext(model_name, dataset_name, weights)


@st.cache_resource(show_spinner=False, max_entries=MAX_CACHED_EXPLANATIONS)
def _cached_explanation(study_name: str, split: str, index: int, definition_json: str,
                        data_dir: str, *, _definition: StudyDefinition,
                        _context: ModelContext) -> ExplorerView:
    # Keyed on (study, split, index). The key also contains the whole study definition and
    # the data folder, so an edited study file or another data folder computes a new one.
    return explain_datapoint(_definition, _context, split, index)


def render_explorer(definition: StudyDefinition) -> None:
    """Draw the datapoint picker and, once requested, every stage of the datapoint."""
    st.markdown(
        "Pick any datapoint of the study's dataset to see every stage, computed live with "
        "the study's model and settings, together with the model's answer and the ground "
        "truth.")
    split_column, index_column = st.columns(2)
    split = split_column.selectbox("Split", SPLITS, key=SPLIT_KEY,
                                   index=SPLITS.index(definition.selection.split))
    index = int(index_column.number_input("Index", min_value=0, value=0, step=1, key=INDEX_KEY))

    try:
        dataset = _dataset(definition.dataset, split)
        check_index(dataset, split, index, definition.dataset)
    except StudyInputError as error:
        st.error(str(error))
        return

    request = (definition.name, split, index)
    requests = st.session_state.setdefault(REQUESTS_KEY, [])
    if request not in requests and st.button(EXPLAIN_BUTTON, key="explorer-explain"):
        requests.append(request)
    if request not in requests:
        _render_datapoint_preview(dataset.datapoint(index))
        st.info(NOT_COMPUTED.format(button=EXPLAIN_BUTTON))
        return

    view = _explanation(definition, split, index)
    if view is not None:
        render_view(view, split, index)


def _explanation(definition: StudyDefinition, split: str, index: int) -> ExplorerView | None:
    """Return the cached or newly computed explanation, or draw why there is none."""
    data_dir = str(paths.data_dir())
    with st.spinner(f"Computing every stage of {split} datapoint {index}..."):
        try:
            context = _model_context(definition.model, definition.dataset, definition.weights,
                                     data_dir)
            missing = context.missing_caches(definition.explanations.sparse_fit_to)
            if missing:
                st.error(MISSING_CACHE.format(
                    model=definition.model, missing=", ".join(str(path) for path in missing)))
                return None
            return _cached_explanation(definition.name, split, index,
                                       definition.model_dump_json(), data_dir,
                                       _definition=definition, _context=context)
        except StudyInputError as error:
            st.error(str(error))
        except (ValueError, RuntimeError) as error:
            logger.exception("The explorer failed on %s datapoint %d of study %r", split, index,
                             definition.name)
            st.error(f"The engine failed on {split} datapoint {index}: {error}")
    return None


def _render_datapoint_preview(datapoint: Mapping[str, Any]) -> None:
    for name, value in datapoint.items():
        if isinstance(value, np.ndarray) and value.ndim == 3:
            st.image(np.clip(value, 0.0, 1.0), caption=name, width=128)
        else:
            st.markdown(f"**{name}:** {value}")


def render_view(view: ExplorerView, split: str, index: int) -> None:
    """Draw a computed datapoint: the model's answer and the ground truth, then Overview
    (U, C) and Features (P, R_l, R_g)."""
    bundle, arrays = view.bundle, view.arrays
    st.subheader(f"{split} datapoint {index} ({bundle['item_key']})")

    picture_column, answer_column = st.columns([1, 2])
    picture_column.image(picture_path(bundle, bundle["image"]["png"]))
    with answer_column:
        st.markdown(f"**Question:** {bundle['question']}")
        verdict = "right" if view.prediction == view.ground_truth else "wrong"
        st.markdown(f"**Model's answer:** {view.prediction}  \n"
                    f"**Ground truth:** {view.ground_truth}  \n"
                    f"The model is **{verdict}** on this datapoint.")
        st.caption("Most probable answers: " + ", ".join(
            f"{label} {probability:.1%}" for label, probability in view.top_answers))

    opacity = render_map_controls(bundle)
    overview_tab, features_tab = st.tabs([texts.OVERVIEW_TAB, texts.FEATURES_TAB])
    stages = bundle["stages"]
    with overview_tab:
        if "U" in stages:
            st.markdown(f"#### U, unimodal importance for class {view.explained_class}")
            render_unimodal(bundle, arrays, opacity)
        if "C" in stages:
            st.markdown(f"#### C, cross-modal interactions for class {view.explained_class}")
            render_interaction(bundle, arrays, opacity)
    with features_tab:
        if "P" in stages:
            st.markdown(f"#### P, multimodal prediction: the top features of class "
                        f"{view.explained_class}")
            st.caption(f"The sparse linear model answers {view.sparse_prediction} on this "
                       "datapoint.")
            render_prediction(bundle)
        st.markdown("#### R_l and R_g, local and global representation of each top feature")
        render_features(bundle, arrays, frozenset({"R_l", "R_g"}), opacity)
