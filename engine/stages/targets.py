"""Targets: the scalar output that an explanation is taken with respect to.

A target is either a class logit or a feature z_j of the penultimate layer. Every
stage function takes a ``Target`` and reads the scalar per datapoint with
``Target.select``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import torch

from engine.interface import ModelOutput, MultimodalModel

TargetKind = Literal["class", "feature"]


@dataclass(frozen=True)
class Target:
    """A class logit or a penultimate feature of a model.

    Attributes
    ----------
    kind : {"class", "feature"}
        ``"class"`` selects column ``index`` of the logits, ``"feature"`` column
        ``index`` of the penultimate features.
    index : int
        Position of the class in ``label_names``, or of the feature in the
        penultimate layer.
    """

    kind: TargetKind
    index: int

    def __post_init__(self) -> None:
        if self.kind not in ("class", "feature"):
            raise ValueError(f"Target kind {self.kind!r} is invalid; use 'class' or 'feature'.")
        try:
            index = operator.index(self.index)
        except TypeError:
            index = -1
        if index < 0:
            raise ValueError(
                f"Target index {self.index!r} is invalid; use a non-negative integer."
            )
        object.__setattr__(self, "index", index)

    def select(self, output: ModelOutput) -> torch.Tensor:
        """Return the target's value for every datapoint, a tensor of shape (batch,)."""
        values = output.logits if self.kind == "class" else output.features
        if self.index >= values.shape[1]:
            raise ValueError(
                f"Target {self.describe()} is out of range: the model output has "
                f"{values.shape[1]} {'classes' if self.kind == 'class' else 'features'}."
            )
        return values[:, self.index]

    def check(self, model: MultimodalModel) -> None:
        """Raise ``ValueError`` when the target does not exist in ``model``."""
        size = len(model.label_names) if self.kind == "class" else int(model.n_features)
        if self.index >= size:
            raise ValueError(
                f"Target {self.describe()} is out of range for model {model.name!r}, which has "
                f"{size} {'classes' if self.kind == 'class' else 'features'}; "
                f"use an index below {size}."
            )

    def describe(self) -> str:
        """Return a short name such as ``class 3`` or ``feature 17``."""
        return f"{self.kind} {self.index}"


def class_target(index: int) -> Target:
    """Return the target of the logit of class ``index``."""
    return Target("class", int(index))


def feature_target(index: int) -> Target:
    """Return the target of penultimate feature z_``index``."""
    return Target("feature", int(index))
