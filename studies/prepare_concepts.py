"""``mviz prepare`` for concept studies: one bundle per penultimate feature.

In a concept-labelling study the unit is a feature z_j, and the participant writes the
concept that z_j stands for. Each bundle shows one feature through R_l and R_g. R_l is one
datapoint of the pool with its U maps for z_j. R_g is the pool datapoints with the largest
and the smallest activation of z_j, each as a plain picture and with its U maps.

Which features become items:

- with ``selection.indices``, exactly those features, in that order;
- otherwise the sparse model's (P's) top features: z_top of every class
  (``explanations.top_features`` per class, from ``SparseModelFit.top_features``), ordered by
  the absolute value of their weight, largest first (ties go to the lower feature index),
  each feature kept at its first place only. The first ``selection.items`` of them are the
  items.

The first ``selection.practice`` features are the practice items. ``selection.split``,
``seed`` and ``exclude_question_types`` do not apply: the datapoints come from the R_g pool
(``explanations.rg_pool`` validation datapoints drawn with ``explanations.seed``).

R_l shows one pool datapoint on which z_j is clearly active but that is not among the R_g
extremes (``local_datapoint``).

Concept studies have no answer key: there is no right concept to compare against, and the
researcher codes the texts afterwards (``studies.coding``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.explain import PoolExample
from engine.interface import Datapoint, MultimodalModel
from engine.stages import feature_target, global_representation, gradient_importance_batch
from studies.bundles import BUNDLE_FORMAT, bundle_ready, write_bundle, write_item_list
from studies.context import POOL_SPLIT, ModelContext
from studies.errors import StudyInputError
from studies.item_bundle import BundleBuilder, global_view, image_and_text_modalities

logger = logging.getLogger(__name__)

def concept_item_key(feature: int) -> str:
    """Return the item key of a feature, such as ``f017``."""
    return f"f{feature:03d}"


def select_concept_features(sparse_fit, n_items: int, per_class: int) -> list[int]:
    """Return the ``n_items`` features of a concept study, by the rule of the module docstring.

    Parameters
    ----------
    sparse_fit : SparseModelFit
        Stage P's fit; its weights have shape (n_classes, n_features).
    n_items : int
        Features to return.
    per_class : int
        Size of z_top per class.

    Raises
    ------
    StudyInputError
        When the classes' z_top together hold fewer than ``n_items`` distinct features.
    """
    candidates: list[tuple[float, int]] = []
    for class_index in range(sparse_fit.coef.shape[0]):
        for feature, weight in sparse_fit.top_features(class_index, per_class):
            candidates.append((abs(weight), feature))
    candidates.sort(key=lambda candidate: (-candidate[0], candidate[1]))
    features = list(dict.fromkeys(feature for _, feature in candidates))
    if len(features) < n_items:
        raise StudyInputError(
            f"selection.items: the sparse model's top features hold only {len(features)} "
            f"distinct features ({per_class} per class), fewer than the {n_items} items "
            f"requested. Lower selection.items or raise explanations.top_features.")
    return features[:n_items]


def local_datapoint(activations: np.ndarray, exclude: Sequence[int] = ()) -> int:
    """Return the pool position of the R_l datapoint: a typical one on which z_j is high.

    The candidates are the datapoints whose activation is at least halfway from the pool's
    median to its maximum, without those in ``exclude`` (the R_g top datapoints) unless
    nothing else remains. The result is the candidate of median activation (the lower
    one of an even count; ties go to the lower position). A fixed quantile would not do:
    many features are near zero on most of the pool, so even their 75th percentile
    shows a datapoint on which the feature does not respond.

    Parameters
    ----------
    activations : ndarray of shape (n_pool,)
        The feature's activation on every pool datapoint.
    exclude : sequence of int
        Pool positions to leave out when other candidates remain.

    Returns
    -------
    int
    """
    activations = np.asarray(activations, dtype=float)
    threshold = (np.median(activations) + activations.max()) / 2
    candidates = np.flatnonzero(activations >= threshold)
    remaining = np.setdiff1d(candidates, np.asarray(exclude, dtype=int))
    if len(remaining):
        candidates = remaining
    ordered = candidates[np.lexsort((candidates, activations[candidates]))]
    return int(ordered[(len(ordered) - 1) // 2])


@dataclass
class ConceptExamples:
    """The datapoints that one concept bundle shows of feature z_j, with their U maps for z_j.

    Attributes
    ----------
    feature : int
    local : PoolExample
        The R_l datapoint (``local_datapoint``).
    top, bottom : list of PoolExample
        R_g: largest activations first, and smallest activations first.
    """

    feature: int
    local: PoolExample
    top: list[PoolExample]
    bottom: list[PoolExample]


def prepare_concept_study(definition, context: ModelContext, *, force: bool) -> tuple[int, int]:
    """Prepare the bundles of a concept study; return (bundles built, bundles reused).

    Finished bundles are reused unless ``force`` is true. The item list is written last.
    """
    explanations = definition.explanations
    selection = definition.selection
    model = context.model
    features = _study_features(definition, context)
    keys = [concept_item_key(feature) for feature in features]
    practice_keys = keys[:selection.practice]

    pending = [feature for feature, key in zip(features, keys, strict=True)
               if force or not bundle_ready(definition.name, key)]
    if pending:
        pool_datapoints, pool_activations = context.pool(explanations.rg_pool, explanations.seed)
        examples = _feature_examples(model, pending, pool_datapoints, pool_activations,
                                     explanations.rg_examples)
        for feature in tqdm(pending, desc=f"preparing {definition.name}", unit="feature"):
            key = concept_item_key(feature)
            header = {"study": definition.name, "item_key": key, "practice": key in practice_keys}
            write_concept_bundle(definition.name, header, model, examples[feature],
                                 pool_datapoints, context.dataset_name)

    write_item_list(definition.name, keys, practice_keys)
    return len(pending), len(features) - len(pending)


def _study_features(definition, context: ModelContext) -> list[int]:
    selection = definition.selection
    n_features = int(context.model.n_features)
    if selection.indices is None:
        sparse_fit = context.sparse_fit(definition.explanations.sparse_fit_to)
        return select_concept_features(sparse_fit, selection.items,
                                       definition.explanations.top_features)

    for position, feature in enumerate(selection.indices):
        if not 0 <= feature < n_features:
            raise StudyInputError(
                f"selection.indices[{position}]: feature {feature} is out of range; in a "
                f"concept study the indices are features of model {context.model.name!r}, "
                f"from 0 to {n_features - 1}.")
    return [int(feature) for feature in selection.indices]


def _feature_examples(
    model: MultimodalModel,
    features: Sequence[int],
    pool_datapoints: Sequence[Datapoint],
    pool_activations: np.ndarray,
    k: int,
) -> dict[int, ConceptExamples]:
    """Pick the R_l and R_g datapoints of every feature and compute their U maps for z_j.

    All gradients come from one call of ``gradient_importance_batch``, which batches the
    (datapoint, feature) pairs of every feature together.
    """
    chosen = {}
    for feature in features:
        top, bottom = global_representation(pool_activations, feature, k)
        local = local_datapoint(pool_activations[:, feature], exclude=top)
        chosen[feature] = ([local], [int(i) for i in top], [int(i) for i in bottom])

    requests = [(feature, position) for feature in features
                for group in chosen[feature] for position in group]
    gradients = gradient_importance_batch(
        model, [pool_datapoints[position] for _, position in requests],
        [feature_target(feature) for feature, _ in requests])
    examples = [PoolExample(position, float(pool_activations[position, feature]), gradient)
                for (feature, position), gradient in zip(requests, gradients, strict=True)]

    result, start = {}, 0
    for feature in features:
        groups = []
        for group in chosen[feature]:
            groups.append(examples[start:start + len(group)])
            start += len(group)
        (local,), top, bottom = groups
        result[feature] = ConceptExamples(feature, local, top, bottom)
    return result


def write_concept_bundle(
    study_name: str,
    header: dict[str, Any],
    model: MultimodalModel,
    examples: ConceptExamples,
    pool_datapoints: Sequence[Datapoint],
    dataset_name: str,
) -> None:
    """Render and write the bundle of one feature (the layout of ``docs/bundle_format.md``)."""
    image_name, text_name = image_and_text_modalities(model)
    builder = BundleBuilder()
    feature = examples.feature
    local = examples.local
    datapoint = pool_datapoints[local.index]
    image = np.asarray(datapoint[image_name], dtype=np.float32)

    content = {
        "format": BUNDLE_FORMAT, **header, "feature": feature,
        "R_l": {
            "question": str(datapoint[text_name]),
            "tokens": list(model.encode([datapoint]).atoms[text_name][0]),
            "activation": local.activation,
            "dataset": dataset_name, "split": POOL_SPLIT,
            "index": _dataset_index(pool_datapoints, local.index),
            "image": builder.image("image", image),
            "image_gradient": builder.heatmap(f"f{feature}_image_gradient", image,
                                              local.gradient[image_name]),
            "token_gradient": [float(score) for score in local.gradient[text_name]],
        },
        "R_g": global_view(builder, model, examples, pool_datapoints, image_name, text_name),
    }
    write_bundle(study_name, header["item_key"], content, builder.arrays, builder.pictures)


def _dataset_index(pool_datapoints: Sequence[Datapoint], position: int) -> int | None:
    """Return the dataset index of a pool datapoint, or None when the pool does not record it."""
    indices = getattr(pool_datapoints, "indices", None)
    return None if indices is None else int(indices[position])


__all__ = [
    "ConceptExamples",
    "concept_item_key",
    "local_datapoint",
    "prepare_concept_study",
    "select_concept_features",
    "write_concept_bundle",
]
