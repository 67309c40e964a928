"""Helpers of stage P: input checks, the held-out split and the scores along the path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class RegularizationPath:
    """The fits along the path, from the strongest penalty to the weakest.

    Attributes
    ----------
    alphas : ndarray of shape (n_alphas,)
        Penalty strength ``alpha`` of each fit (``C = 1 / (n_train * alpha)``).
    n_nonzero : ndarray of shape (n_alphas,), int
        Non-zero entries of the weight matrix.
    accuracy : ndarray of shape (n_alphas,)
        Held-out agreement with the targets the model was fit to.
    fidelity : ndarray of shape (n_alphas,)
        Held-out agreement with the model's predictions; NaN when none were given.
    """

    alphas: np.ndarray
    n_nonzero: np.ndarray
    accuracy: np.ndarray
    fidelity: np.ndarray


def alpha_max(standardized: np.ndarray, targets: np.ndarray, l1_ratio: float) -> float:
    """Return the weakest penalty at which every weight is zero.

    The derivation is in the docstring of ``engine.stages.prediction``.
    """
    classes, class_index = np.unique(targets, return_inverse=True)
    one_hot = np.eye(len(classes))[class_index]
    residual = one_hot - one_hot.mean(axis=0)
    return float(np.abs(standardized.T @ residual).max() / (len(targets) * l1_ratio))


def check_inputs(features, targets, model_predictions, n_classes, l1_ratio, n_alphas,
                  validation_share):
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets)
    if features.ndim != 2 or targets.shape != (features.shape[0],):
        raise ValueError(f"features has shape {features.shape} and targets {targets.shape}; "
                         f"they must be (n_samples, n_features) and (n_samples,).")
    if model_predictions is not None:
        model_predictions = np.asarray(model_predictions)
        if model_predictions.shape != targets.shape:
            raise ValueError(f"model_predictions has shape {model_predictions.shape}; it must "
                             f"match targets, {targets.shape}.")
    if targets.dtype.kind not in "iu" or (len(targets) and targets.min() < 0):
        raise ValueError("targets must be non-negative integer class indices.")
    n_classes = int(targets.max()) + 1 if n_classes is None else int(n_classes)
    if targets.max() >= n_classes:
        raise ValueError(f"targets contain class {targets.max()}, but n_classes is {n_classes}.")
    if not 0 < l1_ratio <= 1:
        raise ValueError(f"l1_ratio {l1_ratio!r} is invalid; use a value in (0, 1].")
    if n_alphas < 1:
        raise ValueError(f"n_alphas {n_alphas!r} is invalid; use a positive integer.")
    if not 0 < validation_share < 1:
        raise ValueError(f"validation_share {validation_share!r} is invalid; use a value in "
                         f"(0, 1).")
    return features, targets, model_predictions, n_classes


def split_held_out(n_samples: int, validation_share: float, random_state: int):
    order = np.random.default_rng(random_state).permutation(n_samples)
    n_held_out = int(round(validation_share * n_samples))
    if n_held_out < 1 or n_held_out >= n_samples:
        raise ValueError(f"validation_share {validation_share} of {n_samples} samples leaves "
                         f"an empty training or held-out share; use more samples.")
    return np.sort(order[n_held_out:]), np.sort(order[:n_held_out])


def full_rows(estimator, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the weights as (n_classes, n_features) with zero rows for absent classes."""
    coef = np.zeros((n_classes, estimator.coef_.shape[1]))
    intercept = np.zeros(n_classes)
    classes = estimator.classes_
    if len(classes) == 2:
        # A binary fit has one row w with p(class 1) = sigmoid(w x + b); the rows -w/2 and
        # w/2 give the same probabilities under a softmax.
        coef[classes] = np.stack([-estimator.coef_[0], estimator.coef_[0]]) / 2
        intercept[classes] = np.array([-estimator.intercept_[0], estimator.intercept_[0]]) / 2
    else:
        coef[classes] = estimator.coef_
        intercept[classes] = estimator.intercept_
    return coef, intercept


def score_path(alphas, coefs: Sequence[np.ndarray], intercepts, classes, x_held_out,
                held_out_targets, held_out_predictions) -> RegularizationPath:
    absent = np.setdiff1d(np.arange(coefs[0].shape[0]), classes)
    accuracy, fidelity = [], []
    for coef, intercept in zip(coefs, intercepts, strict=True):
        scores = x_held_out @ coef.T + intercept
        scores[:, absent] = -np.inf
        predicted = scores.argmax(axis=1)
        accuracy.append(np.mean(predicted == held_out_targets))
        fidelity.append(np.nan if held_out_predictions is None
                        else np.mean(predicted == held_out_predictions))
    return RegularizationPath(np.asarray(alphas), np.array([np.count_nonzero(c) for c in coefs]),
                              np.asarray(accuracy), np.asarray(fidelity))


def choose_fit(path: RegularizationPath, tolerance: float) -> int:
    criterion = path.accuracy if np.all(np.isnan(path.fidelity)) else path.fidelity
    good = np.flatnonzero(criterion >= np.max(criterion) - tolerance)
    # Minimum number of non-zero weights, and among equals the strongest penalty.
    return int(good[np.argmin(path.n_nonzero[good])])


def json_float(value: float) -> float | None:
    return None if np.isnan(value) else value
