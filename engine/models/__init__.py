"""Registry of the models the engine can load by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.interface import MultimodalModel
from engine.models.easyvqa_net import MODEL_NAME as EASYVQA_MODEL_NAME
from engine.models.easyvqa_net import load_easyvqa_model

MODEL_LOADERS: dict[str, Callable[[Path | str | None], MultimodalModel]] = {
    EASYVQA_MODEL_NAME: load_easyvqa_model,
}


def load_model(name: str, weights: Path | str | None = None) -> MultimodalModel:
    """Load a registered model by name, from ``weights`` or its default weights file.

    Raises
    ------
    KeyError
        For an unknown model name; the message lists the known ones.
    FileNotFoundError
        When the weights file does not exist.
    """
    if name not in MODEL_LOADERS:
        raise KeyError(f"Unknown model {name!r}; known models: {', '.join(sorted(MODEL_LOADERS))}.")
    return MODEL_LOADERS[name](weights)


__all__ = ["MODEL_LOADERS", "load_model"]
