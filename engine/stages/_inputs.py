"""Helpers shared by the stages: encoding, inputs that require gradients, atom scores.

One rule turns per-component values of a continuous input (a gradient, a second
derivative) into one score per atom, and every stage uses it:

- ``image``, input (channels, height, width): the sum over channels of the plain
  gradient, which is the derivative along a uniform brightening of the pixel.
  Gradient x input is not used because its baseline is a black image, so every black
  pixel (a black shape, for example) would score zero whatever the model does with it.
- ``text``, input (positions, embedding_dim): the dot product of the gradient with the
  token's embedding (gradient x input), which is the derivative along the token's own
  embedding, a first-order estimate of the effect of removing the token. The plain sum
  of the gradient components is the derivative along the all-ones direction, and it is
  identically zero for encoders that start with LayerNorm (BERT, MiniLM), because
  LayerNorm ignores a constant added to every component.
- ``vector``, input (n_atoms,): the value itself, because each atom is one number.

The second-order gradient uses the same rule twice: the scalar of a source atom is
its first-order score, and the derivative of that scalar is reduced per destination
atom like a gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine.interface import Datapoint, EncodedBatch, Modality, MultimodalModel


def modality_of(model: MultimodalModel, name: str) -> Modality:
    """Return the modality of ``model`` called ``name``; raise ``ValueError`` if missing."""
    for modality in model.modalities:
        if modality.name == name:
            return modality
    names = ", ".join(repr(m.name) for m in model.modalities)
    raise ValueError(f"Modality {name!r} does not exist in model {model.name!r}; use one of {names}.")


def encode_one(model: MultimodalModel, datapoint: Datapoint) -> EncodedBatch:
    """Encode a single datapoint; the result is a batch of size 1."""
    missing = [m.name for m in model.modalities if m.name not in datapoint]
    if missing:
        raise ValueError(
            f"The datapoint has no value for modality {', '.join(missing)} of model "
            f"{model.name!r}; pass a mapping with one entry per modality."
        )
    return model.encode([datapoint])


def require_grad(batch: EncodedBatch, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Return copies of the continuous inputs, with gradients enabled for ``names``."""
    inputs = {}
    for name, tensor in batch.inputs.items():
        copy = tensor.detach().clone()
        if name in names:
            if not copy.is_floating_point():
                raise ValueError(
                    f"The continuous input of modality {name!r} has dtype {copy.dtype}, so no "
                    f"gradient can be taken; the wrapper's encode must return floating-point "
                    f"tensors (pixels or embeddings, not token ids)."
                )
            copy.requires_grad_(True)
        inputs[name] = copy
    return inputs


def atom_positions(batch: EncodedBatch, modality: Modality, row: int = 0) -> list[int]:
    """Return the positions of a text modality's atoms in row ``row`` of its input."""
    try:
        return list(batch.atom_positions[modality.name][row])
    except KeyError:
        raise ValueError(
            f"The encoded batch has no atom_positions for text modality {modality.name!r}; "
            f"the wrapper's encode must list the position of every token."
        ) from None


def atom_names(batch: EncodedBatch, modality: Modality, row: int = 0) -> list[str]:
    """Return the names of a modality's atoms: tokens for text, indices otherwise."""
    if modality.kind == "text":
        return list(batch.atoms[modality.name][row])
    if modality.kind == "vector":
        return [str(i) for i in range(batch.inputs[modality.name].shape[1])]
    height, width = batch.inputs[modality.name].shape[-2:]
    return [f"({i}, {j})" for i in range(height) for j in range(width)]


def reduce_to_atoms(
    modality: Modality, values: torch.Tensor, inputs_row: torch.Tensor, positions: list[int] | None
) -> torch.Tensor:
    """Reduce per-component values to one score per atom, following the module's rule.

    Parameters
    ----------
    values : Tensor of shape (..., *component_shape)
        Any number of leading dimensions, then the shape of one datapoint's input:
        (channels, height, width), (positions, embedding_dim) or (n_atoms,).
    inputs_row : Tensor of shape component_shape
        The datapoint's continuous input, needed for text.
    positions : list of int or None
        Atom positions of a text modality.

    Returns
    -------
    Tensor of shape (..., height, width) for an image, (..., n_atoms) otherwise.
    """
    if modality.kind == "image":
        return values.sum(dim=-3)
    if modality.kind == "text":
        index = torch.as_tensor(positions, dtype=torch.long)
        return (values.index_select(-2, index) * inputs_row.index_select(-2, index)).sum(dim=-1)
    return values


def source_weights(
    modality: Modality,
    inputs_row: torch.Tensor,
    atoms: Sequence[int],
    positions: list[int] | None,
    regions: np.ndarray | None,
) -> torch.Tensor:
    """Return the weights w_a with s_a = sum(w_a * gradient) for each source atom a.

    For an image, ``atoms`` are labels of ``regions`` (height, width) and w_a is one on
    the region's pixels in every channel. For text, w_a is the token's embedding at
    its position, so s_a is the token's gradient x input score. For a vector, w_a is
    one at the atom.

    Returns
    -------
    Tensor of shape (n_source_atoms, *component_shape)
    """
    weights = torch.zeros((len(atoms), *inputs_row.shape), dtype=inputs_row.dtype)
    for row, atom in enumerate(atoms):
        if modality.kind == "image":
            mask = torch.from_numpy(np.asarray(regions) == atom)
            weights[row, :, mask] = 1.0
        elif modality.kind == "text":
            position = positions[atom]
            weights[row, position] = inputs_row[position].detach()
        else:
            weights[row, atom] = 1.0
    return weights


def grid_regions(height: int, width: int, cell: int) -> np.ndarray:
    """Return a label map of shape (height, width) that splits an image into square cells.

    Labels run row-major: the cell in grid row ``r`` and column ``c`` has label
    ``r * n_columns + c`` with ``n_columns = ceil(width / cell)``. Cells at the right
    and bottom edges are smaller when ``cell`` does not divide the size.
    """
    if int(cell) != cell or cell < 1:
        raise ValueError(f"Grid cell size {cell!r} is invalid; use a positive number of pixels.")
    n_columns = -(-width // cell)
    rows = np.arange(height)[:, None] // cell
    columns = np.arange(width)[None, :] // cell
    return (rows * n_columns + columns).astype(np.int64)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Return a detached copy of ``tensor`` as a NumPy array."""
    return tensor.detach().cpu().numpy().copy()
