"""The model-side material that a study needs, computed once and cached on disk.

For a model (identified by its name and the SHA-256 of its weights file) this keeps

- the model's predictions on a dataset split (item selection needs them);
- the *pool*: penultimate features of every validation datapoint. R_g draws its most and
  least activating datapoints from it, and P (the sparse linear model) is fit on it;
- the P fit, once per model and per fit target (model predictions or ground truth).

Everything lives under ``<data>/models/<model>-<weights hash>/``, so retrained weights
never reuse stale caches.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.datasets import DATASETS
from engine.interface import MultimodalModel
from engine.models import load_model
from engine.models.easyvqa_net import DEFAULT_WEIGHTS
from studies import paths
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

POOL_SPLIT = "validation"


class DatasetView:
    """A lazy sequence of a dataset split's datapoints (images load on access)."""

    def __init__(self, dataset, indices: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        return self.dataset.datapoint(int(self.indices[position]))


@dataclass
class SplitPredictions:
    """The model's outputs on a whole split: predicted label and ground-truth label per question."""

    predictions: np.ndarray  # (n_questions,) int
    labels: np.ndarray  # (n_questions,) int
    features: np.ndarray  # (n_questions, n_features) float32


class ModelContext:
    """A loaded model with its dataset, cached split outputs and the P fit.

    The methods memoize with ``functools.cache``, which keeps the instance alive for the
    process; a process uses one context per study model, so that is the intended lifetime.
    """

    def __init__(self, model_name: str, dataset_name: str, weights: str | Path | None) -> None:
        if dataset_name not in DATASETS:
            raise StudyInputError(
                f"Unknown dataset {dataset_name!r}; known datasets: {', '.join(sorted(DATASETS))}.")
        weights_path = Path(weights) if weights else DEFAULT_WEIGHTS
        if not weights_path.is_absolute():
            weights_path = paths.REPOSITORY_ROOT / weights_path
        try:
            self.model: MultimodalModel = load_model(model_name, weights_path)
        except KeyError as error:
            raise StudyInputError(str(error.args[0])) from error
        except FileNotFoundError as error:
            raise StudyInputError(str(error)) from error

        self.dataset_name = dataset_name
        self.weights_path = weights_path
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()[:12]
        self.cache_dir = paths.data_dir() / "models" / f"{model_name}-{digest}"

    @functools.cache
    def dataset(self, split: str):
        return DATASETS[self.dataset_name](split)

    @functools.cache
    def split_outputs(self, split: str) -> SplitPredictions:
        """Return predictions and features on a whole split, from the cache when present."""
        path = self._outputs_path(split)
        if path.is_file():
            with np.load(path) as cached:
                return SplitPredictions(cached["predictions"], cached["labels"], cached["features"])

        dataset = self.dataset(split)
        logger.info("computing model outputs on %d %s datapoints", len(dataset), split)
        output = self.model.predict(DatasetView(dataset))
        outputs = SplitPredictions(
            predictions=output.logits.argmax(dim=1).numpy(),
            labels=np.array([dataset.label(i) for i in range(len(dataset))]),
            features=output.features.numpy().astype(np.float32),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, predictions=outputs.predictions, labels=outputs.labels,
                            features=outputs.features)
        return outputs

    def pool(self, size: int, seed: int) -> tuple[DatasetView, np.ndarray]:
        """Return the R_g pool: ``size`` validation datapoints (seeded) and their features."""
        outputs = self.split_outputs(POOL_SPLIT)
        if size > len(outputs.labels):
            raise StudyInputError(
                f"explanations.rg_pool: {size} is larger than the {POOL_SPLIT} split "
                f"({len(outputs.labels)} datapoints); use at most that many.")
        indices = np.sort(np.random.default_rng(seed).choice(len(outputs.labels), size, replace=False))
        return DatasetView(self.dataset(POOL_SPLIT), indices), outputs.features[indices]

    def missing_caches(self, fit_to: str = "model") -> list[Path]:
        """Return the cache files of the pool outputs and the P fit that do not exist yet.

        The app uses this to refuse live explanations instead of fitting inside a page.
        """
        from engine.stages.prediction import FIT_METADATA

        needed = [self._outputs_path(POOL_SPLIT), self._sparse_fit_folder(fit_to) / FIT_METADATA]
        return [path for path in needed if not path.is_file()]

    def _outputs_path(self, split: str) -> Path:
        return self.cache_dir / f"outputs_{split}.npz"

    def _sparse_fit_folder(self, fit_to: str) -> Path:
        return self.cache_dir / f"sparse_model_{fit_to}"

    @functools.cache
    def sparse_fit(self, fit_to: str = "model"):
        """Return the P fit on the validation split's features, fit once and cached."""
        from engine.stages.prediction import FIT_METADATA, SparseModelFit, fit_prediction_stage

        folder = self._sparse_fit_folder(fit_to)
        if (folder / FIT_METADATA).is_file():
            return SparseModelFit.load(folder)
        outputs = self.split_outputs(POOL_SPLIT)
        logger.info("fitting the sparse linear model (P) to the %s", fit_to)
        fit = fit_prediction_stage(outputs.features, outputs.predictions, outputs.labels, fit_to=fit_to)
        fit.save(folder)
        return fit


def explain_config(explanations):
    """Return the engine's ``ExplainConfig`` for the ``explanations`` block of a study."""
    from engine.explain import ExplainConfig

    return ExplainConfig(top_tokens=explanations.top_tokens,
                         top_features=explanations.top_features,
                         rg_k=explanations.rg_examples, lime_samples=explanations.lime_samples,
                         seed=explanations.seed)
