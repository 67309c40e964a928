"""The live second-order gradient of error-categorization items, computed on request.

In the MultiViz condition of an error study the participant picks words of the question,
and the loaded model computes stage C for them. That is the second-order gradient from
each chosen token (the source, in the text modality) to every pixel (the destination, in
the image modality), with the model's predicted class as target. This is the only place
where a participant page calls the engine. The datapoint comes from the dataset through the
bundle's ``dataset``, ``split`` and ``index``, so no answer key is read.

The model context is created once per server process (``st.cache_resource``), and each
result is cached (``st.cache_data``) by study, item and chosen token indices, together with
the data folder and the bundle's completion time, so a rebuilt bundle is never served a
stale result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

from app.state import completion_stamp
from engine.models.easyvqa_net import DEFAULT_WEIGHTS
from engine.stages import class_target, grid_regions, second_order_gradient, top_atoms
from studies import paths
from studies.context import ModelContext
from studies.definition import StudyDefinition
from studies.errors import StudyInputError
from studies.item_bundle import image_and_text_modalities

logger = logging.getLogger(__name__)

# The regions are square cells of this many pixels, and this many of them are outlined.
GRID_CELL = 8
TOP_REGIONS = 3


@dataclass(frozen=True)
class LiveInteraction:
    """The second-order gradient of the chosen question words on one datapoint.

    Attributes
    ----------
    token_indices : tuple of int
        The chosen tokens, as positions in the bundle's ``tokens``, increasing.
    tokens : tuple of str
        The chosen tokens.
    maps : ndarray of shape (n_tokens, height, width)
        Row i scores every pixel by its interaction with token i, for the predicted class.
    image : ndarray of shape (height, width, 3), floats in [0, 1]
        The datapoint's picture.
    regions : tuple of (int, int)
        Grid row and column of the ``TOP_REGIONS`` cells of ``grid_cell`` pixels with the
        largest absolute interaction summed over the cell's pixels and the chosen tokens,
        strongest first.
    grid_cell : int
    """

    token_indices: tuple[int, ...]
    tokens: tuple[str, ...]
    maps: np.ndarray
    image: np.ndarray
    regions: tuple[tuple[int, int], ...]
    grid_cell: int

    def region_mask(self, rank: int) -> np.ndarray:
        """Return the pixels of region ``rank`` (0 is the strongest), shape (height, width)."""
        row, col = self.regions[rank]
        mask = np.zeros(self.image.shape[:2], dtype=bool)
        cell = self.grid_cell
        mask[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = True
        return mask


def resolve_words(tokens: Sequence[str], typed: str) -> tuple[list[int], list[str]]:
    """Return the token positions of the words in ``typed`` and the typed words not found.

    Words are separated by whitespace or commas and compared case-insensitively with the
    tokens. A word that occurs several times in the question selects every occurrence.
    """
    lowered = [str(token).casefold() for token in tokens]
    positions: list[int] = []
    unknown: list[str] = []
    for word in typed.replace(",", " ").split():
        found = [position for position, token in enumerate(lowered) if token == word.casefold()]
        if found:
            positions.extend(found)
        else:
            unknown.append(word)
    return sorted(set(positions)), unknown


def token_interactions(
    definition: StudyDefinition, bundle: Mapping[str, Any], token_indices: Sequence[int]
) -> LiveInteraction:
    """Compute, or take from the cache, the live interactions of the chosen tokens.

    Parameters
    ----------
    definition : StudyDefinition
        The error study; it names the model, its weights and the dataset.
    bundle : mapping
        The item's bundle, with ``dataset``, ``split``, ``index`` and ``tokens``.
    token_indices : sequence of int
        Positions in ``bundle["tokens"]``; duplicates are dropped.

    Raises
    ------
    StudyInputError
        For no tokens, a position outside the question, or a bundle without its
        datapoint's split and index.
    """
    tokens = list(bundle.get("tokens", []))
    chosen = tuple(sorted({int(index) for index in token_indices}))
    if not chosen:
        raise StudyInputError("no question word chosen; choose at least one word")
    outside = [index for index in chosen if not 0 <= index < len(tokens)]
    if outside:
        raise StudyInputError(
            f"token position {outside[0]} is outside the question, which has {len(tokens)} "
            f"tokens (0 to {len(tokens) - 1}); choose words of the question")
    if bundle.get("split") is None or bundle.get("index") is None:
        raise StudyInputError(
            f"the bundle of item {bundle.get('item_key')!r} does not record its datapoint's "
            "split and index; prepare the study again")

    stamp = completion_stamp(definition.name, str(bundle["item_key"]))
    return _cached_interactions(definition.name, str(bundle["item_key"]), chosen,
                                str(paths.data_dir()), stamp, _definition=definition,
                                _bundle=bundle)


def model_context(definition: StudyDefinition) -> ModelContext:
    """Return the study's model context, loaded once per server process and weights file."""
    # Resolving the default here lets studies with and without a weights key share one model.
    weights = (definition.weights_path or DEFAULT_WEIGHTS).resolve()
    return _cached_context(definition.model, definition.dataset, str(weights))


@st.cache_resource(show_spinner=False)
def _cached_context(model_name: str, dataset_name: str, weights: str) -> ModelContext:
    logger.info("Loading model %r for live interactions", model_name)
    return ModelContext(model_name, dataset_name, weights)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_interactions(
    study_name: str,
    item_key: str,
    token_indices: tuple[int, ...],
    data_dir: str,
    stamp: int,
    *,
    _definition: StudyDefinition,
    _bundle: Mapping[str, Any],
) -> LiveInteraction:
    # The leading underscores keep the definition and the bundle out of the cache key.
    # The study name, item key, data folder and completion time stand for them.
    context = model_context(_definition)
    model = context.model
    image_name, text_name = image_and_text_modalities(model)
    datapoint = context.dataset(str(_bundle["split"])).datapoint(int(_bundle["index"]))

    with torch.no_grad():
        logits = model.forward(model.encode([datapoint])).logits[0]
    predicted = int(torch.argmax(logits))
    shown_answer = (_bundle.get("shown_answers") or {}).get("model")
    if shown_answer is not None and shown_answer != model.label_names[predicted]:
        logger.warning("Item %r of study %r shows the model's answer as %r, but the model "
                       "now predicts %r; prepare the study again", item_key, study_name,
                       shown_answer, model.label_names[predicted])

    maps = second_order_gradient(model, datapoint, class_target(predicted), source=text_name,
                                 destination=image_name, source_atoms=list(token_indices))
    image = np.asarray(datapoint[image_name], dtype=np.float32)
    logger.info("Computed live interactions of tokens %s of item %r of study %r",
                list(token_indices), item_key, study_name)
    return LiveInteraction(
        token_indices=token_indices,
        tokens=tuple(str(_bundle["tokens"][index]) for index in token_indices),
        maps=maps,
        image=image,
        regions=strongest_regions(maps.sum(axis=0), GRID_CELL, TOP_REGIONS),
        grid_cell=GRID_CELL,
    )


def strongest_regions(scores: np.ndarray, cell: int, k: int) -> tuple[tuple[int, int], ...]:
    """Return the grid cells whose summed scores have the largest absolute value.

    Parameters
    ----------
    scores : ndarray of shape (height, width)
        Because the second-order gradient is linear in the source weights, the sum of the
        chosen tokens' maps is the interaction of the tokens taken together.
    cell : int
        Cell size in pixels (cells at the right and bottom edges may be smaller).
    k : int
        Number of cells.

    Returns
    -------
    tuple of (row, column)
        Strongest first; ties go to the cell that comes first row by row.
    """
    height, width = scores.shape
    labels = grid_regions(height, width, cell)
    sums = np.bincount(labels.ravel(), weights=np.asarray(scores, dtype=float).ravel())
    n_columns = -(-width // cell)
    return tuple((label // n_columns, label % n_columns) for label in top_atoms(sums, k))


__all__ = [
    "GRID_CELL",
    "TOP_REGIONS",
    "LiveInteraction",
    "model_context",
    "resolve_words",
    "strongest_regions",
    "token_interactions",
]
