"""Loader for the easy-VQA dataset, read from the installed ``easy-vqa`` package.

easy-VQA (https://github.com/vzhou842/easy-VQA) has 64x64 images of one coloured shape
and templated questions about its shape and colour, or yes/no questions. The package
ships 4,000 train and 1,000 test images, 38,575 train and 9,673 test questions and an
answer vocabulary of 13 words.

The package has no validation split, so this loader carves one out of train: a fixed
share of the *images* (not the questions) goes to validation, so no image is seen in
both training and validation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Split = Literal["train", "validation", "test"]
QuestionType = Literal["shape", "color", "yes/no"]

SPLITS: tuple[Split, ...] = ("train", "validation", "test")
SHAPES = frozenset({"circle", "rectangle", "triangle"})
YES_NO = frozenset({"yes", "no"})
VALIDATION_SHARE = 0.1
VALIDATION_SEED = 0


def question_type(answer: str) -> QuestionType:
    """Return the type of a question from its answer: shape, color or yes/no."""
    if answer in YES_NO:
        return "yes/no"
    if answer in SHAPES:
        return "shape"
    return "color"


@dataclass(frozen=True)
class EasyVQAQuestion:
    """One question of easy-VQA.

    Attributes
    ----------
    index : int
        Position of the question within its split; the stable id used in studies.
    question, answer : str
    image_id : int
        Name of the image file in the package (``<image_id>.png``).
    question_type : {"shape", "color", "yes/no"}
    """

    index: int
    question: str
    answer: str
    image_id: int
    question_type: QuestionType


class EasyVQA:
    """One split of easy-VQA with images as float arrays.

    Parameters
    ----------
    split : {"train", "validation", "test"}

    Examples
    --------
    >>> test = EasyVQA("test")
    >>> len(test)
    9673
    >>> datapoint = test.datapoint(0)   # {"image": (64, 64, 3) float32, "question": str}
    """

    def __init__(self, split: Split) -> None:
        if split not in SPLITS:
            raise ValueError(
                f"Unknown easy-VQA split {split!r}; use one of {', '.join(SPLITS)}."
            )
        self.split = split
        self.questions = _split_questions(split)
        self.answers: tuple[str, ...] = answer_vocabulary()
        self._image_paths = _image_paths("test" if split == "test" else "train")

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> EasyVQAQuestion:
        return self.questions[index]

    def check_index(self, index: int) -> None:
        """Raise ``IndexError`` with the valid range when ``index`` is out of range."""
        if not 0 <= index < len(self):
            raise IndexError(
                f"Item index {index} is out of range for the easy-VQA {self.split} split, "
                f"which has indices 0 to {len(self) - 1}."
            )

    def image(self, image_id: int) -> np.ndarray:
        """Return an image as a float32 array of shape (64, 64, 3) in [0, 1]."""
        return _load_image(self._image_paths[image_id])

    def datapoint(self, index: int) -> dict[str, object]:
        """Return the raw inputs of question ``index`` as a model datapoint."""
        self.check_index(index)
        item = self.questions[index]
        return {"image": self.image(item.image_id), "question": item.question}

    def label(self, index: int) -> int:
        """Return the position of question ``index``'s answer in the vocabulary."""
        return self.answers.index(self.questions[index].answer)

    def images_array(self) -> tuple[np.ndarray, dict[int, int]]:
        """Load every image of the split at once.

        Returns
        -------
        images : ndarray of shape (n_images, 64, 64, 3), float32
        row_of_image : dict of int to int
            Row of each image id in ``images``.
        """
        image_ids = sorted({q.image_id for q in self.questions})
        images = np.stack([self.image(image_id) for image_id in image_ids])
        return images, {image_id: row for row, image_id in enumerate(image_ids)}


@functools.lru_cache(maxsize=1)
def answer_vocabulary() -> tuple[str, ...]:
    """Return the 13 answers of easy-VQA in the package's order (the label order)."""
    import easy_vqa

    return tuple(easy_vqa.get_answers())


@functools.lru_cache(maxsize=3)
def _split_questions(split: Split) -> tuple[EasyVQAQuestion, ...]:
    import easy_vqa

    if split == "test":
        texts, answers, image_ids = easy_vqa.get_test_questions()
        keep = range(len(texts))
    else:
        texts, answers, image_ids = easy_vqa.get_train_questions()
        validation_images = _validation_image_ids(sorted(set(image_ids)))
        wanted_validation = split == "validation"
        keep = [i for i, image_id in enumerate(image_ids)
                if (image_id in validation_images) == wanted_validation]

    return tuple(
        EasyVQAQuestion(position, texts[i], answers[i], image_ids[i], question_type(answers[i]))
        for position, i in enumerate(keep)
    )


def _validation_image_ids(train_image_ids: list[int]) -> frozenset[int]:
    rng = np.random.default_rng(VALIDATION_SEED)
    n_validation = round(VALIDATION_SHARE * len(train_image_ids))
    chosen = rng.choice(train_image_ids, size=n_validation, replace=False)
    return frozenset(int(image_id) for image_id in chosen)


@functools.lru_cache(maxsize=2)
def _image_paths(package_split: str) -> dict[int, str]:
    import easy_vqa

    if package_split == "test":
        return easy_vqa.get_test_image_paths()
    return easy_vqa.get_train_image_paths()


def _load_image(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
