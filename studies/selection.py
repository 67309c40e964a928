"""Which datapoints become study items, and the answer sheet of each item.

Selection is seeded and depends only on the study definition and the model's
predictions, so a second ``mviz prepare`` picks the same items and reuses their bundles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studies.errors import StudyInputError


@dataclass(frozen=True)
class SelectedItems:
    """Dataset indices of the practice items and of the counted items, each in order."""

    practice: list[int]
    counted: list[int]

    @property
    def all(self) -> list[int]:
        return self.practice + self.counted


def item_key(split: str, index: int) -> str:
    """Return the key of a datapoint item, such as ``test-03121``; it reveals no answer."""
    return f"{split}-{index:05d}"


def check_indices(selection, n_questions: int) -> None:
    """Raise ``StudyInputError`` for an explicit item index outside the split."""
    for position, index in enumerate(selection.indices or []):
        if not 0 <= index < n_questions:
            raise StudyInputError(
                f"selection.indices[{position}]: item index {index} is out of range for the "
                f"{selection.split} split, which has indices 0 to {n_questions - 1}. "
                f"Use indices inside that range.")


def select_datapoints(
    selection,
    question_types: np.ndarray,
    predictions: np.ndarray,
    labels: np.ndarray,
    *,
    wrong_only: bool = False,
) -> SelectedItems:
    """Draw the study's items from a dataset split.

    Parameters
    ----------
    selection
        The ``selection`` block of a study definition (items, practice, seed,
        exclude_question_types, model_wrong_share, indices).
    question_types, predictions, labels : ndarray of shape (n_questions,)
        Per question of the split: its type, the model's predicted label and the true label.
    wrong_only : bool
        Draw only items the model got wrong (error-categorization studies).

    Raises
    ------
    StudyInputError
        When an explicit index is out of range or the split has too few candidates.
    """
    n_questions = len(labels)
    if selection.indices:
        check_indices(selection, n_questions)
        indices = [int(i) for i in selection.indices]
        return SelectedItems(indices[:selection.practice], indices[selection.practice:])

    excluded = set(selection.exclude_question_types or [])
    candidates = np.array([i for i in range(n_questions) if question_types[i] not in excluded])
    model_wrong = predictions[candidates] != labels[candidates]
    wrong, right = candidates[model_wrong], candidates[~model_wrong]
    rng = np.random.default_rng(selection.seed)
    n_counted = selection.items - selection.practice

    if wrong_only:
        chosen = _draw(rng, wrong, selection.items, "items the model got wrong")
        return SelectedItems(sorted(chosen[:selection.practice]), sorted(chosen[selection.practice:]))

    if selection.model_wrong_share is None:
        chosen = _draw(rng, candidates, selection.items, "candidate items")
        return SelectedItems(sorted(chosen[:selection.practice]), sorted(chosen[selection.practice:]))

    n_wrong = round(selection.model_wrong_share * n_counted)
    counted = (_draw(rng, wrong, n_wrong, "items the model got wrong")
               + _draw(rng, right, n_counted - n_wrong, "items the model got right"))
    remaining = np.setdiff1d(candidates, counted)
    practice = _draw(rng, remaining, selection.practice, "practice candidates")
    return SelectedItems(sorted(practice), sorted(counted))


def _draw(rng: np.random.Generator, pool: np.ndarray, count: int, what: str) -> list[int]:
    if count > len(pool):
        raise StudyInputError(
            f"selection: the split has only {len(pool)} {what}, fewer than the {count} needed. "
            f"Lower selection.items or selection.model_wrong_share, or include more question types.")
    return [int(i) for i in rng.choice(pool, size=count, replace=False)]


def answer_choices(
    prediction: str, ground_truth: str, type_answers: list[str], n_choices: int, seed: int
) -> list[str]:
    """Return the answer sheet of one item: up to ``n_choices`` answers, sorted alphabetically.

    The sheet always contains the prediction and the ground truth; the other answers
    are drawn from the answers of the question's type with ``seed``. Sorting makes the
    order independent of which choice is the prediction.
    """
    sheet = {prediction, ground_truth}
    others = sorted(set(type_answers) - sheet)
    rng = np.random.default_rng(seed)
    n_others = max(0, min(n_choices - len(sheet), len(others)))
    sheet.update(rng.choice(others, size=n_others, replace=False).tolist() if n_others else [])
    return sorted(sheet)
