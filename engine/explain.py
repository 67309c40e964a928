"""Every MultiViz stage for one datapoint, as a tree of plain dataclasses.

``explain_item`` runs U, C, P, R_l and R_g for one item and returns NumPy arrays,
lists and floats only (no pictures, no files), so the bundle writer decides what to
render and store. The explanation contains the model's prediction and logits. They
belong to the answer key and must not reach a participant's page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.interface import Datapoint, MultimodalModel
from engine.stages import (
    Interaction,
    LimeImportance,
    LocalRepresentation,
    SparseModelFit,
    class_target,
    feature_target,
    global_representation,
    gradient_importance,
    gradient_importance_batch,
    interactions_for,
    lime_importances,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


@dataclass
class ExplainConfig:
    """Settings of ``explain_item``.

    Attributes
    ----------
    top_tokens : int
        Source atoms (tokens) per non-image modality for stage C.
    top_features : int
        Features z_top of the target class explained by R_l and R_g.
    rg_k : int
        Pool datapoints with the largest, and with the smallest, activation per feature.
    lime_samples : int
        Perturbed datapoints per LIME run.
    seed : int
        Seed of LIME.
    use_lime : bool
    grid_cell : int
        Cell size in pixels of the image regions used as source atoms of stage C.
    """

    top_tokens: int = 3
    top_features: int = 5
    rg_k: int = 3
    lime_samples: int = 500
    seed: int = 0
    use_lime: bool = True
    grid_cell: int = 8

    def __post_init__(self) -> None:
        for name in ("top_tokens", "top_features", "rg_k", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"ExplainConfig.{name} is {getattr(self, name)!r}; use a "
                                 f"non-negative integer.")
        if self.lime_samples < 2 or self.grid_cell < 1:
            raise ValueError(f"ExplainConfig has lime_samples={self.lime_samples!r} and "
                             f"grid_cell={self.grid_cell!r}; use at least 2 and 1.")


@dataclass
class PoolExample:
    """One R_g datapoint: its position in the pool, activation and U maps for z_j."""

    index: int
    activation: float
    gradient: dict[str, np.ndarray]


@dataclass
class FeatureExplanation:
    """R_l and R_g of one feature z_j of the target class's z_top.

    Attributes
    ----------
    feature : int
    weight : float
        The sparse model's weight of z_j for the target class.
    activation : float
        z_j on the item.
    standardized : float
        z_j on the item, standardized like the sparse model's inputs.
    local : LocalRepresentation
        Stage R_l.
    top, bottom : list of PoolExample
        Stage R_g: largest activations first, and smallest activations first.
    """

    feature: int
    weight: float
    activation: float
    standardized: float
    local: LocalRepresentation
    top: list[PoolExample]
    bottom: list[PoolExample]


@dataclass
class PredictionSummary:
    """Stage P for the item: the sparse model's view of the target class.

    Attributes
    ----------
    class_index : int
        The class whose weights are listed (the target class).
    features, weights : list of int, list of float
        z_top of the class and their weights, largest first.
    contributions : list of float
        Weight times the item's standardized activation, per feature.
    intercept : float
    sparse_prediction : int
        The class the sparse model predicts for the item.
    accuracy, fidelity : float
        Held-out accuracy and fidelity of the sparse model.
    n_nonzero : int
        Non-zero weights of the sparse model.
    """

    class_index: int
    features: list[int]
    weights: list[float]
    contributions: list[float]
    intercept: float
    sparse_prediction: int
    accuracy: float
    fidelity: float
    n_nonzero: int


@dataclass
class ItemExplanation:
    """Every stage for one datapoint.

    Attributes
    ----------
    target_class, predicted_class : int
        The explained class and the model's prediction (answer key information).
    logits : ndarray of shape (n_labels,)
    activations : ndarray of shape (n_features,)
        The penultimate features of the item.
    atoms : dict of str to list of str
        Tokens of each text modality, in score order.
    gradient : dict of str to ndarray
        Stage U, first-order gradient maps for the target class.
    lime : dict of str to LimeImportance
        Stage U, LIME for the target class (empty when LIME is off).
    interactions : list of Interaction
        Stage C for the target class, every ordered pair of modalities.
    prediction : PredictionSummary
        Stage P.
    features : list of FeatureExplanation
        Stages R_l and R_g for each feature of z_top.
    config : ExplainConfig
    """

    target_class: int
    predicted_class: int
    logits: np.ndarray
    activations: np.ndarray
    atoms: dict[str, list[str]]
    gradient: dict[str, np.ndarray]
    lime: dict[str, LimeImportance]
    interactions: list[Interaction]
    prediction: PredictionSummary
    features: list[FeatureExplanation]
    config: ExplainConfig = field(default_factory=ExplainConfig)


def explain_item(
    model: MultimodalModel,
    datapoint: Datapoint,
    *,
    sparse_fit: SparseModelFit,
    pool_datapoints: Sequence[Datapoint],
    pool_activations: np.ndarray,
    config: ExplainConfig | None = None,
    target_class: int | None = None,
    progress: Progress | None = None,
) -> ItemExplanation:
    """Compute every stage for one datapoint.

    Parameters
    ----------
    model : MultimodalModel
    datapoint : mapping of modality name to raw value
    sparse_fit : SparseModelFit
        Stage P, fit on the penultimate features of ``model``.
    pool_datapoints : sequence of datapoints
        The R_g pool.
    pool_activations : ndarray of shape (n_pool, n_features)
        Penultimate features of ``pool_datapoints`` (``pool_features``).
    config : ExplainConfig, optional
    target_class : int, optional
        Class to explain; default: the model's prediction. z_top are the features
        with the largest sparse-model weights for this class.
    progress : callable (step, total, message), optional
        Called before each step, with steps counted from 0, and once at the end with
        ``step == total``.

    Returns
    -------
    ItemExplanation
    """
    config = config or ExplainConfig()
    _check_inputs(model, datapoint, sparse_fit, pool_datapoints, pool_activations)
    report = progress or (lambda step, total, message: None)

    with torch.no_grad():
        batch = model.encode([datapoint])
        output = model.forward(batch)
    logits = output.logits[0].double().cpu().numpy()
    activations = output.features[0].double().cpu().numpy()
    predicted = int(np.argmax(logits))
    target_index = predicted if target_class is None else int(target_class)
    target = class_target(target_index)
    z_top = sparse_fit.top_features(target_index, config.top_features)
    if len(z_top) < config.top_features:
        logger.warning("The sparse model has %d non-zero weights for class %d; R_l and R_g "
                       "explain those only (top_features=%d).", len(z_top), target_index,
                       config.top_features)
    total = 4 + len(z_top)

    report(0, total, "unimodal importance (U)")
    gradient = gradient_importance(model, datapoint, target)
    lime_by_target = _lime_for_targets(model, datapoint, target, [j for j, _ in z_top], config)

    report(1, total, "cross-modal interactions (C)")
    interactions = interactions_for(model, datapoint, target, gradient,
                                    top_tokens=config.top_tokens, grid_cell=config.grid_cell)

    report(2, total, "multimodal prediction (P)")
    prediction = _prediction_summary(sparse_fit, target_index, z_top, activations)

    local = {}
    for step, (feature, _) in enumerate(z_top, start=3):
        report(step, total, f"local representation (R_l) of feature {feature}")
        local[feature] = _local(model, datapoint, feature, activations, lime_by_target, config)

    report(total - 1, total, "global representation (R_g)")
    pool = _pool_examples(model, pool_datapoints, pool_activations, [j for j, _ in z_top],
                          config.rg_k)
    standardized = sparse_fit.standardize(activations[None, :])[0]
    features = [
        FeatureExplanation(j, weight, float(activations[j]), float(standardized[j]), local[j],
                           *pool[j])
        for j, weight in z_top
    ]
    report(total, total, "done")

    atoms = {name: list(tokens[0]) for name, tokens in batch.atoms.items()}
    return ItemExplanation(target_index, predicted, logits, activations, atoms, gradient,
                           lime_by_target.get(None, {}), interactions, prediction, features,
                           config)


def _check_inputs(model, datapoint, sparse_fit, pool_datapoints, pool_activations) -> None:
    missing = [m.name for m in model.modalities if m.name not in datapoint]
    if missing:
        raise ValueError(f"The datapoint has no value for modality {', '.join(missing)} of model "
                         f"{model.name!r}; pass a mapping with one entry per modality.")
    n_features = int(model.n_features)
    if sparse_fit.coef.shape != (len(model.label_names), n_features):
        raise ValueError(f"The sparse model has weights of shape {sparse_fit.coef.shape}, but "
                         f"model {model.name!r} has {len(model.label_names)} classes and "
                         f"{n_features} features; fit it on this model's features.")
    if np.shape(pool_activations) != (len(pool_datapoints), n_features):
        raise ValueError(f"pool_activations has shape {np.shape(pool_activations)}; it must be "
                         f"({len(pool_datapoints)}, {n_features}), one row per pool datapoint.")


def _lime_for_targets(model, datapoint, target, features, config):
    """Run LIME once per modality for the class and every feature; key None is the class."""
    if not config.use_lime:
        return {}
    targets = [target] + [feature_target(j) for j in features]
    keys = [None, *features]
    results: dict[int | None, dict[str, LimeImportance]] = {key: {} for key in keys}
    for modality in model.modalities:
        if modality.kind not in ("image", "text"):
            continue
        scores = lime_importances(model, datapoint, targets, modality.name,
                                  n_samples=config.lime_samples, random_state=config.seed)
        for key, importance in zip(keys, scores, strict=True):
            results[key][modality.name] = importance
    return results


def _local(model, datapoint, feature, activations, lime_by_target, config) -> LocalRepresentation:
    target = feature_target(feature)
    gradient = gradient_importance(model, datapoint, target)
    interactions = interactions_for(model, datapoint, target, gradient,
                                    top_tokens=config.top_tokens, image_sources=False)
    return LocalRepresentation(feature, float(activations[feature]), gradient,
                               lime_by_target.get(feature, {}), interactions)


def _prediction_summary(sparse_fit, class_index, z_top, activations) -> PredictionSummary:
    standardized = sparse_fit.standardize(activations[None, :])[0]
    return PredictionSummary(
        class_index=class_index,
        features=[j for j, _ in z_top],
        weights=[weight for _, weight in z_top],
        contributions=[float(weight * standardized[j]) for j, weight in z_top],
        intercept=float(sparse_fit.intercept[class_index]),
        sparse_prediction=int(sparse_fit.predict(activations[None, :])[0]),
        accuracy=sparse_fit.accuracy,
        fidelity=sparse_fit.fidelity,
        n_nonzero=sparse_fit.n_nonzero,
    )


def _pool_examples(model, pool_datapoints, pool_activations, features, k):
    """Return the R_g top and bottom examples of every feature, from one batched pass."""
    chosen = {j: global_representation(pool_activations, j, k) for j in features}
    requests = [(j, int(i)) for j in features for ranking in chosen[j] for i in ranking]
    gradients = gradient_importance_batch(
        model, [pool_datapoints[i] for _, i in requests], [feature_target(j) for j, _ in requests])
    examples = [PoolExample(i, float(pool_activations[i, j]), g)
                for (j, i), g in zip(requests, gradients, strict=True)]

    result, position = {}, 0
    for j in features:
        n_top, n_bottom = len(chosen[j][0]), len(chosen[j][1])
        result[j] = (examples[position:position + n_top],
                     examples[position + n_top:position + n_top + n_bottom])
        position += n_top + n_bottom
    return result
