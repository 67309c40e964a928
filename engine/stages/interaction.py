"""Stage C, cross-modal interactions, by the second-order gradient.

For a source atom a (a token, an image region, a vector entry), s_a is its
first-order score. That is the gradient of the target with respect to the source
input, summed over the atom with the weights of ``engine.stages._inputs``: over a
region's pixels and channels, or along the token's embedding for a token. The
interaction of a with the destination modality is the gradient of s_a with respect to
the destination input, reduced per destination atom by the same rule. It is zero for a
model that is additive in the two modalities, f = g1(x1) + g2(x2). For f = x1^T W x2
between two vector modalities it is W.

All atoms are computed in one batched backward pass
(``torch.autograd.grad(..., is_grads_batched=True)``, which vmaps the backward pass).
This works through MiniLM's eager attention. The loop version is the reference for
tests and benchmarks.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from engine.interface import Datapoint, EncodedBatch, Modality, MultimodalModel
from engine.stages._inputs import (
    atom_positions,
    encode_one,
    grid_regions,
    modality_of,
    reduce_to_atoms,
    require_grad,
    source_weights,
    to_numpy,
)
from engine.stages.targets import Target

logger = logging.getLogger(__name__)

DEFAULT_GRID_CELL = 8


def second_order_gradient(
    model: MultimodalModel,
    datapoint: Datapoint,
    target: Target,
    *,
    source: str,
    destination: str,
    source_atoms: Sequence[int] | None = None,
    regions: np.ndarray | None = None,
    grid_cell: int = DEFAULT_GRID_CELL,
    chunk_size: int | None = None,
    via: Literal["auto", "source", "destination"] = "auto",
) -> np.ndarray:
    """Compute the second-order gradient from each source atom to every destination atom.

    Parameters
    ----------
    model : MultimodalModel
    datapoint : mapping of modality name to raw value
    target : Target
    source, destination : str
        Names of two different modalities.
    source_atoms : sequence of int, optional
        Text or vector source: indices of the atoms (default: all atoms).
        Image source: labels of ``regions`` (default: every label, increasing).
    regions : ndarray of shape (height, width), int, optional
        Image source only: the region label of each pixel, for example superpixels
        from ``slic_segments``. Default: a grid of ``grid_cell`` x ``grid_cell`` cells
        (``grid_regions``); ``grid_cell=1`` makes every pixel an atom.
    chunk_size : int, optional
        Atoms per batched backward pass. Default: all at once. Memory grows with it:
        4096 pixel atoms may need a smaller chunk.
    via : {"auto", "source", "destination"}
        Which side's atoms the batched backward pass runs over. Mixed partial
        derivatives commute, and both sides reduce atoms by the same weights. So the
        score of (source atom a, destination atom b) equals the score of (b, a) in
        the reverse direction, summed over a's pixels when a is a region.
        ``"destination"`` computes the reverse direction for every destination atom
        (one pass per token instead of one per region) and sums it. It needs a text
        or vector destination. ``"auto"`` uses it when the destination has fewer
        atoms. Both give the same values up to rounding (about 1e-6 relative in
        float32 on the built-in model).

    Returns
    -------
    ndarray of shape (n_source_atoms, height, width) for an image destination,
    (n_source_atoms, n_atoms) otherwise.
    """
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size {chunk_size!r} is invalid; use a positive integer or None.")
    if via not in ("auto", "source", "destination"):
        raise ValueError(f"via {via!r} is invalid; use 'auto', 'source' or 'destination'.")
    problem = _Problem.build(model, datapoint, target, source, destination, source_atoms,
                             regions, grid_cell)
    if not problem.atoms:
        return problem.zeros()

    n_destination_atoms = problem.zeros().shape[1] if problem.destination.kind != "image" else 0
    if via == "auto":
        via = "destination" if 0 < n_destination_atoms < len(problem.atoms) else "source"
    if via == "source":
        return _batched(problem, chunk_size)

    if problem.destination.kind == "image":
        raise ValueError("via='destination' needs a text or vector destination; an image "
                         "destination would need one backward pass per pixel.")
    reverse = _Problem.build(model, datapoint, target, destination, source, None, None, 1)
    return problem.gather(_batched(reverse, chunk_size))


def _batched(problem: _Problem, chunk_size: int | None) -> np.ndarray:
    """Run the batched backward passes of one direction."""
    gradient, destination_input = problem.first_order()
    if gradient is None:
        return problem.zeros()
    chunk = chunk_size or max(1, len(problem.atoms))
    parts = []
    for start in range(0, len(problem.atoms), chunk):
        weights = problem.weights[start:start + chunk].unsqueeze(1)
        try:
            (part,) = torch.autograd.grad(gradient, destination_input, grad_outputs=weights,
                                          is_grads_batched=True, retain_graph=True,
                                          allow_unused=True, materialize_grads=True)
        except RuntimeError as error:
            # Some operators have no batching rule for their backward pass; then one
            # backward pass per atom gives the same values, only slower.
            message = (f"Batched second-order gradient failed ({error}); falling back to one "
                       f"backward pass per source atom.")
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            part = torch.stack([
                torch.autograd.grad(gradient, destination_input, grad_outputs=w,
                                    retain_graph=True, allow_unused=True,
                                    materialize_grads=True)[0]
                for w in weights
            ])
        if part.shape != weights.shape[:1] + destination_input.shape:
            # The source gradient does not depend on the destination at all, and
            # materialize_grads then returns one unbatched zero tensor.
            part = torch.zeros(weights.shape[:1] + destination_input.shape,
                               dtype=destination_input.dtype)
        parts.append(problem.reduce(part[:, 0]))
    return to_numpy(torch.cat(parts))


def second_order_gradient_loop(
    model: MultimodalModel,
    datapoint: Datapoint,
    target: Target,
    *,
    source: str,
    destination: str,
    source_atoms: Sequence[int] | None = None,
    regions: np.ndarray | None = None,
    grid_cell: int = DEFAULT_GRID_CELL,
) -> np.ndarray:
    """Compute ``second_order_gradient`` with one backward pass per source atom.

    The reference implementation: same parameters and result, slower.
    """
    problem = _Problem.build(model, datapoint, target, source, destination, source_atoms,
                             regions, grid_cell)
    gradient, destination_input = problem.first_order()
    if gradient is None or not problem.atoms:
        return problem.zeros()
    rows = []
    for weights in problem.weights:
        source_score = (gradient[0] * weights).sum()
        (part,) = torch.autograd.grad(source_score, destination_input, retain_graph=True,
                                      allow_unused=True, materialize_grads=True)
        rows.append(problem.reduce(part[0]))
    return to_numpy(torch.stack(rows))


def top_atoms(scores: np.ndarray, k: int) -> list[int]:
    """Return the indices of the ``k`` atoms with the largest absolute score.

    Parameters
    ----------
    scores : ndarray of shape (n_atoms,)
    k : int
        At most this many indices are returned (fewer when there are fewer atoms).

    Returns
    -------
    list of int
        Ordered by decreasing absolute score; ties go to the lower index.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1:
        raise ValueError(f"top_atoms needs scores of shape (n_atoms,); got shape {scores.shape}.")
    if k < 0:
        raise ValueError(f"k {k!r} is invalid; use a non-negative integer.")
    order = np.lexsort((np.arange(len(scores)), -np.abs(scores)))
    return [int(i) for i in order[:k]]


class _Problem:
    """The encoded datapoint, the two modalities and the source weights of one request."""

    def __init__(self, model, batch: EncodedBatch, target: Target, source: Modality,
                 destination: Modality, atoms: list[int], regions: np.ndarray | None) -> None:
        self.model, self.batch, self.target = model, batch, target
        self.source, self.destination = source, destination
        self.atoms, self.regions = atoms, regions
        self.inputs = require_grad(batch, [source.name, destination.name])
        source_row = self.inputs[source.name][0].detach()
        self.weights = source_weights(source, source_row, atoms, self._positions(source), regions)

    @classmethod
    def build(cls, model, datapoint, target, source, destination, source_atoms, regions,
              grid_cell) -> _Problem:
        source_modality = modality_of(model, source)
        destination_modality = modality_of(model, destination)
        if source == destination:
            raise ValueError(f"Source and destination are both {source!r}; a cross-modal "
                             f"interaction needs two different modalities.")
        target.check(model)
        batch = encode_one(model, datapoint)
        atoms, regions = _source_atoms(batch, source_modality, source_atoms, regions, grid_cell)
        return cls(model, batch, target, source_modality, destination_modality, atoms, regions)

    def _positions(self, modality: Modality) -> list[int] | None:
        return atom_positions(self.batch, modality) if modality.kind == "text" else None

    def first_order(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Return the source gradient (with its graph) and the destination input.

        The gradient is None when it cannot depend on the destination: the target
        ignores the source, or is linear in it.
        """
        output = self.model.forward(self.batch.with_inputs(self.inputs))
        value = self.target.select(output).sum()
        (gradient,) = torch.autograd.grad(value, self.inputs[self.source.name], create_graph=True,
                                          allow_unused=True)
        if gradient is None or not gradient.requires_grad:
            return None, self.inputs[self.destination.name]
        return gradient, self.inputs[self.destination.name]

    def gather(self, reverse: np.ndarray) -> np.ndarray:
        """Turn reverse-direction scores (n_destination_atoms, *source_atom_shape) into
        this direction's (n_source_atoms, n_destination_atoms)."""
        if self.source.kind == "image":
            return np.stack([reverse[:, self.regions == label].sum(axis=1) for label in self.atoms])
        return reverse[:, self.atoms].T.copy()

    def zeros(self) -> np.ndarray:
        """Return the all-zero result, shape (n_source_atoms, *destination_atom_shape)."""
        row = torch.zeros_like(self.inputs[self.destination.name][0]).unsqueeze(0)
        shape = self.reduce(row).shape[1:]
        return np.zeros((len(self.atoms), *shape), dtype=to_numpy(row).dtype)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Reduce (n, *component_shape) second derivatives per destination atom."""
        row = self.inputs[self.destination.name][0].detach()
        return reduce_to_atoms(self.destination, values, row, self._positions(self.destination))


def _source_atoms(batch: EncodedBatch, modality: Modality, source_atoms, regions, grid_cell):
    """Validate the source atoms; return them and the region map (image only)."""
    if modality.kind == "image":
        height, width = batch.inputs[modality.name].shape[-2:]
        regions = grid_regions(height, width, grid_cell) if regions is None else np.asarray(regions)
        if regions.shape != (height, width):
            raise ValueError(f"regions has shape {regions.shape}; image modality "
                             f"{modality.name!r} needs a label map of shape {(height, width)}.")
        labels = [int(label) for label in np.unique(regions)]
        atoms = labels if source_atoms is None else [int(a) for a in source_atoms]
        unknown = sorted(set(atoms) - set(labels))
        if unknown:
            raise ValueError(f"Source regions {unknown} do not occur in the region map; "
                             f"use labels among {labels[:10]}{'...' if len(labels) > 10 else ''}.")
        return atoms, regions

    if modality.kind == "text":
        n_atoms = len(atom_positions(batch, modality))
    else:
        n_atoms = int(batch.inputs[modality.name].shape[1])
    atoms = list(range(n_atoms)) if source_atoms is None else [int(a) for a in source_atoms]
    invalid = [a for a in atoms if not 0 <= a < n_atoms]
    if invalid:
        raise ValueError(f"Source atoms {invalid} are out of range for modality "
                         f"{modality.name!r}, which has {n_atoms} atoms (0 to {n_atoms - 1}).")
    return atoms, None
