"""Stage U, unimodal importance: a score per atom of each modality for one target.

Two methods: the first-order gradient (this module) and LIME (``lime_importance``,
implemented in ``engine.stages._lime`` and re-exported here). Gradients are taken with
respect to the continuous inputs of ``EncodedBatch.inputs`` (pixels, token embeddings),
never token ids. The rule of ``engine.stages._inputs`` reduces them to atoms: the sum
over channels for an image, gradient x input for a token, the value for a vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from engine.interface import Datapoint, MultimodalModel
from engine.stages._inputs import atom_positions, reduce_to_atoms, require_grad, to_numpy
from engine.stages._lime import LimeImportance, lime_importance, lime_importances, slic_segments
from engine.stages.targets import Target

logger = logging.getLogger(__name__)


def gradient_importance(
    model: MultimodalModel, datapoint: Datapoint, target: Target
) -> dict[str, np.ndarray]:
    """Compute the first-order gradient score of every atom of every modality.

    Parameters
    ----------
    model : MultimodalModel
    datapoint : mapping of modality name to raw value
    target : Target
        The class logit or feature z_j to explain.

    Returns
    -------
    dict of str to ndarray
        One signed array per modality: shape (height, width) for an image,
        (n_atoms,) for text (one score per token) and for a vector.
    """
    return gradient_importance_batch(model, [datapoint], target)[0]


def gradient_importance_batch(
    model: MultimodalModel,
    datapoints: Sequence[Datapoint],
    targets: Target | Sequence[Target],
    *,
    batch_size: int = 64,
) -> list[dict[str, np.ndarray]]:
    """Compute ``gradient_importance`` for many datapoints with one backward pass per batch.

    Parameters
    ----------
    datapoints : sequence of datapoints
    targets : Target or sequence of Target
        One target for all datapoints, or one per datapoint.
    batch_size : int
        Datapoints per forward and backward pass.

    Returns
    -------
    list of dict of str to ndarray
        The result of ``gradient_importance`` for each datapoint, in order.

    Notes
    -----
    The gradient of the sum of the rows' targets equals each row's own gradient only
    when the model treats the rows of a batch independently (no batch statistics, as
    in evaluation mode).
    """
    if isinstance(targets, Target):
        targets = [targets] * len(datapoints)
    if len(targets) != len(datapoints):
        raise ValueError(
            f"Got {len(targets)} targets for {len(datapoints)} datapoints; pass one target "
            f"or one per datapoint."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size!r} is invalid; use a positive integer.")
    for target in set(targets):
        target.check(model)

    results: list[dict[str, np.ndarray]] = []
    for start in range(0, len(datapoints), batch_size):
        chunk = list(datapoints[start:start + batch_size])
        results += _gradient_chunk(model, chunk, list(targets[start:start + batch_size]))
    return results


def _gradient_chunk(
    model: MultimodalModel, datapoints: list[Datapoint], targets: list[Target]
) -> list[dict[str, np.ndarray]]:
    batch = model.encode(datapoints)
    names = [m.name for m in model.modalities]
    inputs = require_grad(batch, names)

    output = model.forward(batch.with_inputs(inputs))
    values = torch.stack([target.select(output)[row] for row, target in enumerate(targets)])
    gradients = torch.autograd.grad(values.sum(), [inputs[name] for name in names],
                                    allow_unused=True)

    results: list[dict[str, np.ndarray]] = [{} for _ in datapoints]
    for modality, gradient in zip(model.modalities, gradients, strict=True):
        if gradient is None:
            # The target does not depend on this modality at all.
            gradient = torch.zeros_like(inputs[modality.name])
        for row in range(len(datapoints)):
            positions = atom_positions(batch, modality, row) if modality.kind == "text" else None
            scores = reduce_to_atoms(modality, gradient[row], inputs[modality.name][row].detach(),
                                     positions)
            results[row][modality.name] = to_numpy(scores)
    return results


__all__ = [
    "LimeImportance",
    "gradient_importance",
    "gradient_importance_batch",
    "lime_importance",
    "lime_importances",
    "slic_segments",
]
