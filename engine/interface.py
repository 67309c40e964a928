"""The protocol that every wrapped model implements.

The stage code (``engine.stages``) talks to a model only through this protocol, so it
never imports a dataset or a particular architecture. A wrapper turns raw datapoints
into *continuous inputs*: one floating-point tensor per modality that gradients are
taken against (pixels for an image, token embeddings for a question). It then runs the
model on those tensors and returns the logits and the penultimate features.

A datapoint is a mapping from modality name to its raw value, for example
``{"image": array of shape (64, 64, 3) in [0, 1], "question": "what color is the shape?"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

ModalityKind = Literal["image", "text", "vector"]
Datapoint = Mapping[str, Any]


@dataclass(frozen=True)
class Modality:
    """One input channel of a model.

    Attributes
    ----------
    name : str
        Key of the modality in a datapoint and in ``EncodedBatch.inputs``.
    kind : {"image", "text", "vector"}
        How atoms are laid out in the continuous input.
        ``"image"``: a tensor of shape (batch, channels, height, width); an atom is a
        pixel, and scores are summed over channels.
        ``"text"``: a tensor of shape (batch, positions, embedding_dim); an atom is a
        token at one of ``EncodedBatch.atom_positions``, and scores are summed over
        the embedding dimension.
        ``"vector"``: a tensor of shape (batch, n_atoms); each entry is an atom.
    """

    name: str
    kind: ModalityKind


@dataclass
class EncodedBatch:
    """Continuous inputs of a batch of datapoints, ready for ``forward``.

    Attributes
    ----------
    inputs : dict of str to Tensor
        One tensor per modality, batch first. The stage code may replace these tensors
        by copies that require gradients before calling ``forward``.
    extras : dict of str to Tensor
        Everything else the forward pass needs and that is never differentiated
        (an attention mask, for example).
    atoms : dict of str to list of list of str
        For each text modality, the atom names (tokens) of every datapoint.
    atom_positions : dict of str to list of list of int
        For each text modality, the position in ``inputs[name]`` of each atom, so
        special and padding positions are left out of every score.
    """

    inputs: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    atoms: dict[str, list[list[str]]] = field(default_factory=dict)
    atom_positions: dict[str, list[list[int]]] = field(default_factory=dict)

    def __len__(self) -> int:
        first = next(iter(self.inputs.values()))
        return int(first.shape[0])

    def with_inputs(self, inputs: dict[str, torch.Tensor]) -> EncodedBatch:
        """Return a copy of this batch whose continuous inputs are ``inputs``."""
        return EncodedBatch(inputs, self.extras, self.atoms, self.atom_positions)


@dataclass
class ModelOutput:
    """Outputs of a forward pass.

    Attributes
    ----------
    logits : Tensor of shape (batch, n_labels)
    features : Tensor of shape (batch, n_features)
        The penultimate layer, which is the input of the last linear layer.
    """

    logits: torch.Tensor
    features: torch.Tensor


@runtime_checkable
class MultimodalModel(Protocol):
    """What the engine needs from a model.

    Attributes
    ----------
    name : str
        Identifier used in study definitions and bundle metadata.
    modalities : tuple of Modality
    label_names : tuple of str
        Name of each output class, in logit order.
    n_features : int
        Width of the penultimate layer.
    """

    name: str
    modalities: tuple[Modality, ...]
    label_names: tuple[str, ...]
    n_features: int

    def encode(self, datapoints: Sequence[Datapoint]) -> EncodedBatch:
        """Turn raw datapoints into continuous inputs (no gradients needed)."""
        ...

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        """Run the model on continuous inputs; differentiable in ``batch.inputs``."""
        ...

    # Optional, for text modalities with subword tokens (LIME perturbs token lists):
    # def join_atoms(self, modality: str, atoms: Sequence[str]) -> str:
    #     """Return the raw text whose encoding has exactly these atoms."""
