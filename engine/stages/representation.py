"""Stages R_l and R_g: what a penultimate feature z_j responds to.

R_l (local representation) is stage U and stage C for one datapoint with the target
set to z_j instead of a class. R_g (global representation) ranks a pool of datapoints
by the activation of z_j and keeps the k largest, and the k smallest for concept
labelling. ``engine.explain`` adds the U maps of those datapoints.

This module also assembles stage C for the explanations (``interactions_for``): which
source atoms to use, and their names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.interface import Datapoint, MultimodalModel
from engine.stages._inputs import atom_names, encode_one, grid_regions
from engine.stages._lime import LimeImportance, lime_importances
from engine.stages.interaction import DEFAULT_GRID_CELL, second_order_gradient, top_atoms
from engine.stages.targets import Target, feature_target
from engine.stages.unimodal import gradient_importance

logger = logging.getLogger(__name__)


@dataclass
class Interaction:
    """Stage C from one source modality to one destination modality.

    Attributes
    ----------
    source, destination : str
        Modality names.
    source_atoms : list of int
        Token or vector indices, or region labels for an image source.
    source_names : list of str
        The tokens, vector indices or ``"region <label>"`` of ``source_atoms``.
    scores : ndarray of shape (n_source_atoms, height, width) or (n_source_atoms, n_atoms)
        Second-order gradient of each source atom to every destination atom.
    regions : ndarray of shape (height, width), int, or None
        Region label map of an image source.
    """

    source: str
    destination: str
    source_atoms: list[int]
    source_names: list[str]
    scores: np.ndarray
    regions: np.ndarray | None = None


def interactions_for(
    model: MultimodalModel,
    datapoint: Datapoint,
    target: Target,
    gradient: dict[str, np.ndarray],
    *,
    top_tokens: int = 3,
    grid_cell: int = DEFAULT_GRID_CELL,
    image_sources: bool = True,
) -> list[Interaction]:
    """Compute stage C for every ordered pair of modalities of ``model``.

    A text or vector source uses its ``top_tokens`` atoms by absolute first-order
    score (``gradient``, from ``gradient_importance``). An image source uses the cells
    of a ``grid_cell`` grid, unless ``image_sources`` is False, which skips it.
    """
    batch = encode_one(model, datapoint)
    interactions = []
    for source in model.modalities:
        if source.kind == "image" and not image_sources:
            continue
        for destination in model.modalities:
            if destination.name == source.name:
                continue
            if source.kind == "image":
                scores = second_order_gradient(model, datapoint, target, source=source.name,
                                               destination=destination.name, grid_cell=grid_cell)
                regions = grid_regions(*batch.inputs[source.name].shape[-2:], grid_cell)
                atoms = [int(label) for label in np.unique(regions)]
                names = [f"region {label}" for label in atoms]
            else:
                atoms = top_atoms(gradient[source.name], top_tokens)
                all_names = atom_names(batch, source)
                names = [all_names[a] for a in atoms]
                regions = None
                scores = second_order_gradient(model, datapoint, target, source=source.name,
                                               destination=destination.name, source_atoms=atoms)
            interactions.append(Interaction(source.name, destination.name, atoms, names, scores,
                                            regions))
    return interactions


@dataclass
class LocalRepresentation:
    """Stage R_l for one feature z_j and one datapoint.

    Attributes
    ----------
    feature : int
    activation : float
        The value of z_j on the datapoint.
    gradient : dict of str to ndarray
        ``gradient_importance`` maps for z_j.
    lime : dict of str to LimeImportance
        LIME scores for z_j (empty when LIME is off).
    interactions : list of Interaction
        Stage C for z_j from the top tokens (top atoms of each non-image modality).
    """

    feature: int
    activation: float
    gradient: dict[str, np.ndarray]
    lime: dict[str, LimeImportance] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)


def local_representation(
    model: MultimodalModel,
    datapoint: Datapoint,
    feature: int,
    *,
    top_tokens: int = 3,
    use_lime: bool = False,
    lime_samples: int = 500,
    random_state: int = 0,
) -> LocalRepresentation:
    """Compute stage R_l: U and C for one datapoint with the target set to feature z_j.

    Parameters
    ----------
    feature : int
        Index j of the penultimate feature.
    top_tokens : int
        C is computed from this many top atoms of each non-image modality (by absolute
        first-order score for z_j) to every other modality.
    use_lime : bool
        Also compute LIME for every image and text modality.
    lime_samples, random_state : LIME's sample count and seed.

    Returns
    -------
    LocalRepresentation
    """
    target = feature_target(feature)
    target.check(model)
    gradient = gradient_importance(model, datapoint, target)
    with torch.no_grad():
        activation = float(target.select(model.forward(encode_one(model, datapoint)))[0])

    lime = {}
    if use_lime:
        for modality in model.modalities:
            if modality.kind in ("image", "text"):
                (lime[modality.name],) = lime_importances(
                    model, datapoint, [target], modality.name, n_samples=lime_samples,
                    random_state=random_state)
    interactions = interactions_for(model, datapoint, target, gradient, top_tokens=top_tokens,
                                    image_sources=False)
    return LocalRepresentation(feature, activation, gradient, lime, interactions)


def pool_features(
    model: MultimodalModel, datapoints: Sequence[Datapoint], batch_size: int = 256
) -> np.ndarray:
    """Run the model on a pool without gradients; return its penultimate features.

    Returns
    -------
    ndarray of shape (n_pool, n_features), float32
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size!r} is invalid; use a positive integer.")
    features = []
    with torch.no_grad():
        for start in range(0, len(datapoints), batch_size):
            chunk = [datapoints[i] for i in range(start, min(start + batch_size, len(datapoints)))]
            features.append(model.forward(model.encode(chunk)).features.float().cpu().numpy())
    if not features:
        return np.zeros((0, int(model.n_features)), dtype=np.float32)
    return np.concatenate(features)


def global_representation(
    pool_activations: np.ndarray, feature: int, k: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Return the pool datapoints with the largest and the smallest activation of z_j.

    Parameters
    ----------
    pool_activations : ndarray of shape (n_pool, n_features)
    feature : int
    k : int
        Datapoints per end; fewer when the pool is smaller.

    Returns
    -------
    top_indices : ndarray of shape (k,), int
        Largest activation first; ties go to the lower pool index.
    bottom_indices : ndarray of shape (k,), int
        Smallest activation first; ties go to the lower pool index.
    """
    activations = np.asarray(pool_activations)
    if activations.ndim != 2:
        raise ValueError(f"pool_activations has shape {activations.shape}; it must be "
                         f"(n_pool, n_features).")
    if not 0 <= feature < activations.shape[1]:
        raise ValueError(f"Feature {feature} is out of range for pool activations with "
                         f"{activations.shape[1]} features.")
    if k < 0:
        raise ValueError(f"k {k!r} is invalid; use a non-negative integer.")
    column = activations[:, feature]
    indices = np.arange(len(column))
    top = np.lexsort((indices, -column))[:k]
    bottom = np.lexsort((indices, column))[:k]
    return top.astype(np.int64), bottom.astype(np.int64)
