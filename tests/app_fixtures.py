"""A small prepared study on disk, for the tests of the Streamlit app.

``build_study`` writes a study file, bundles in the bundle format (synthetic 16x16
pictures and maps, every stage present), the item list and an answer key, and points
the app at them through the environment (``MVIZ_STUDIES_DIR``, ``MVIZ_DATA_DIR``,
``MVIZ_DATABASE_URL``, ``MVIZ_ID_SALT``). It builds simulation studies by default, and
concept studies (one feature bundle per item, no answer key) or error studies (datapoint
bundles with ``shown_answers``) with ``study_type``.

The bundles of an error study name real easy-VQA test datapoints (``ERROR_DATAPOINTS``)
with their real questions and tokens, so the live second-order gradient can run the
built-in model on them. Their pictures and maps stay synthetic.

Every answer string is unique to its item (``"amber-c001"``), so a test can search a
rendered page for the answer key of any item. Each bundle lists its choices with the
model's prediction first and the rest in reverse order, which is never sorted, so a page
that kept the bundle's order would show where the prediction is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import Engine

from studies.bundles import write_answer_key, write_bundle, write_item_list
from studies.store import create_store

IMAGE_SIZE = 16
PICTURE_FACTOR = 4
GRID_CELL = 8
TOKENS = ["what", "is", "drawn", "in", "the", "picture", "?"]
QUESTION = "what is drawn in the picture?"
TOP_TOKEN_INDICES = (1, 2)
FEATURES = (17, 4)
COLOR_WORDS = ("amber", "cobalt", "jade", "umber")
# Real easy-VQA test datapoints for error items: (index, question, the model's tokens,
# correct answer). test_app_types checks the tokens against the built-in model.
ERROR_DATAPOINTS = (
    (0, "what is the red shape?", ["what", "is", "the", "red", "shape", "?"], "triangle"),
    (1, "what is the color of the triangle?",
     ["what", "is", "the", "color", "of", "the", "triangle", "?"], "red"),
    (2, "what is the color of the shape?",
     ["what", "is", "the", "color", "of", "the", "shape", "?"], "red"),
)
# The answer shown as the model's on error items: another answer of the question's type.
ERROR_MODEL_ANSWERS = {"triangle": "circle", "red": "blue"}
CONCEPT_FEATURE_BASE = 40
APP_SCRIPT = Path(__file__).resolve().parents[1] / "app" / "main.py"


@dataclass
class FixtureStudy:
    """What ``build_study`` wrote, and where."""

    name: str
    conditions: list[str]
    studies_dir: Path
    data_dir: Path
    database_path: Path
    practice_keys: list[str]
    counted_keys: list[str]
    answer_key: dict[str, dict[str, object]]
    bundle_choices: dict[str, list[str]]

    @property
    def item_keys(self) -> list[str]:
        return self.practice_keys + self.counted_keys

    def engine(self) -> Engine:
        """Open the study's response store (a real SQLite file)."""
        return create_store(f"sqlite:///{self.database_path}")


def configure_environment(monkeypatch: pytest.MonkeyPatch, root: Path) -> tuple[Path, Path, Path]:
    """Point the app at folders under ``root``; return (studies dir, data dir, database file)."""
    studies_dir = root / "study_files"
    data_dir = root / "data"
    database_path = data_dir / "responses.sqlite3"
    studies_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MVIZ_STUDIES_DIR", str(studies_dir))
    monkeypatch.setenv("MVIZ_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MVIZ_DATABASE_URL", f"sqlite:///{database_path}")
    monkeypatch.setenv("MVIZ_ID_SALT", "app-test-salt")
    return studies_dir, data_dir, database_path


def build_study(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    conditions: list[str],
    *,
    name: str = "app-study",
    n_practice: int = 1,
    n_counted: int = 3,
    participants_per_condition: int = 3,
    completion_url: str | None = None,
    prediction_shift: int = 1,
    study_type: str = "simulation",
) -> FixtureStudy:
    """Write a prepared study and point the app at it.

    Parameters
    ----------
    prediction_shift : int
        Selects which sorted choice is the model's prediction (choice number
        ``(item number + prediction_shift) % 4``), so two builds can differ only in
        their answer keys. Simulation studies only.
    study_type : {"simulation", "concept", "error"}
        An error study has at most ``len(ERROR_DATAPOINTS)`` items.
    """
    studies_dir, data_dir, database_path = configure_environment(monkeypatch, root)
    practice_keys = [f"p{number:03d}" for number in range(n_practice)]
    counted_keys = [f"c{number:03d}" for number in range(n_counted)]

    answer_key: dict[str, dict[str, object]] = {}
    bundle_choices: dict[str, list[str]] = {}
    for number, item_key in enumerate(practice_keys + counted_keys):
        practice = item_key in practice_keys
        if study_type == "concept":
            _write_concept_bundle(name, item_key, number, practice)
            continue
        if study_type == "error":
            answer_key[item_key] = _write_error_bundle(name, item_key, number, practice)
            continue
        choices = sorted(f"{word}-{item_key}" for word in COLOR_WORDS)
        prediction = choices[(number + prediction_shift) % len(choices)]
        # The model is right on even items and wrong on odd ones.
        wrong = choices[(number + prediction_shift + 2) % len(choices)]
        truth = prediction if number % 2 == 0 else wrong
        answer_key[item_key] = {"prediction": prediction, "ground_truth": truth,
                                "model_correct": prediction == truth}
        bundle_choices[item_key] = [prediction] + sorted(
            (choice for choice in choices if choice != prediction), reverse=True)
        _write_item_bundle(name, item_key, number, practice, bundle_choices[item_key])

    write_item_list(name, practice_keys + counted_keys, practice_keys)
    if study_type != "concept":
        write_answer_key(name, answer_key)
    _write_study_file(studies_dir / f"{name}.yaml", name, conditions, n_practice + n_counted,
                      n_practice, participants_per_condition, completion_url, study_type)
    return FixtureStudy(name, list(conditions), studies_dir, data_dir, database_path,
                        practice_keys, counted_keys, answer_key, bundle_choices)


def _write_study_file(
    path: Path,
    name: str,
    conditions: list[str],
    items: int,
    practice: int,
    participants_per_condition: int,
    completion_url: str | None,
    study_type: str = "simulation",
) -> None:
    document = {
        "name": name,
        "type": study_type,
        "title": "Guess the answers of a test model",
        "dataset": "easy-vqa",
        "model": "easyvqa-minilm-cnn",
        "selection": {"split": "test", "items": items, "practice": practice, "seed": 0},
        "conditions": list(conditions),
        "participants_per_condition": participants_per_condition,
        "choices": len(COLOR_WORDS) if study_type == "simulation" else None,
        "completion_url": completion_url,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _picture(array: np.ndarray) -> np.ndarray:
    """Return an (H, W) or (H, W, 3) array in [0, 1] as an upscaled uint8 RGB picture."""
    if array.ndim == 2:
        scaled = (array - array.min()) / (np.ptp(array) or 1.0)
        array = np.stack([scaled, np.zeros_like(scaled), 1.0 - scaled], axis=-1)
    picture = np.clip(array * 255.0, 0, 255).astype(np.uint8)
    return picture.repeat(PICTURE_FACTOR, axis=0).repeat(PICTURE_FACTOR, axis=1)


def _map_entry(prefix: str) -> dict[str, str]:
    return {"png": f"{prefix}.png", "array": prefix}


def _write_item_bundle(
    study_name: str,
    item_key: str,
    number: int,
    practice: bool,
    choices: list[str] | None,
    *,
    question: str = QUESTION,
    tokens: list[str] = TOKENS,
    header: dict[str, object] | None = None,
) -> None:
    """Write a datapoint bundle; ``choices`` None leaves them out (error studies)."""
    generator = np.random.default_rng(number)
    arrays: dict[str, np.ndarray] = {}

    def scores(name: str) -> dict[str, str]:
        arrays[name] = generator.normal(size=(IMAGE_SIZE, IMAGE_SIZE))
        return _map_entry(name)

    def token_scores() -> list[float]:
        return [round(float(value), 3) for value in generator.normal(size=len(tokens))]

    def example_token_scores() -> list[float]:
        return [round(float(value), 3) for value in generator.normal(size=len(TOKENS))]

    arrays["image"] = generator.uniform(size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    # Even items store regions as a label map (one score row per label), odd items as
    # grid cells addressed by (row, column); the app reads both layouts.
    grid = IMAGE_SIZE // GRID_CELL
    if number % 2 == 0:
        cells = np.arange(IMAGE_SIZE) // GRID_CELL
        arrays["c_regions"] = cells[:, None] * grid + cells[None, :]
        arrays["c_region_to_tokens"] = generator.normal(size=(grid * grid, len(tokens)))
        region_view = {"array": "c_region_to_tokens", "regions": "c_regions",
                       "top_regions": [1, 2]}
    else:
        arrays["c_region_to_tokens"] = generator.normal(size=(grid, grid, len(tokens)))
        region_view = {"array": "c_region_to_tokens", "grid_cell": GRID_CELL,
                       "top_regions": [[0, 1], [1, 0]]}

    stages = {
        "U": {"image_gradient": scores("u_image_gradient"), "image_lime": scores("u_image_lime"),
              "token_gradient": token_scores(), "token_lime": token_scores()},
        "C": {"token_to_image": [{"token_index": index, "token": tokens[index],
                                  **scores(f"c_token_{index}")} for index in TOP_TOKEN_INDICES],
              "region_to_tokens": region_view},
        "R_l": [{"feature": feature, "activation": round(0.5 + position / 10, 2),
                 "image_gradient": scores(f"f{feature}_image_gradient"),
                 "token_gradient": token_scores(),
                 "token_to_image": [{"token_index": index, "token": tokens[index],
                                     **scores(f"f{feature}_c_token_{index}")}
                                    for index in TOP_TOKEN_INDICES]}
                for position, feature in enumerate(FEATURES)],
        "R_g": [{"feature": feature,
                 "top": [_example(feature, "top", rank, scores, example_token_scores)
                         for rank in range(2)],
                 "bottom": [_example(feature, "bottom", rank, scores, example_token_scores)
                            for rank in range(2)]}
                for feature in FEATURES],
        "P": {"features": [{"feature": feature, "weight": 1.5 - position / 2, "value": 0.4,
                            "contribution": round((1.5 - position / 2) * 0.4, 3)}
                           for position, feature in enumerate(FEATURES)],
              "intercept": 0.1,
              "sparse_model": {"accuracy": 0.9, "fidelity": 0.95, "n_nonzero": 12}},
    }
    content = {
        "format": 1, "study": study_name, "item_key": item_key, "practice": practice,
        "question": question, "question_type": "color", "tokens": tokens,
        "image": {"png": "image.png", "array": "image"}, "stages": stages, **(header or {}),
    }
    if choices is not None:
        content["choices"] = choices

    pictures = {"image.png": _picture(arrays["image"]),
                "legend.png": _picture(np.linspace(-1, 1, IMAGE_SIZE)[None, :].repeat(2, axis=0))}
    for name, array in arrays.items():
        if name not in ("image", "c_region_to_tokens", "c_regions"):
            pictures[f"{name}.png"] = _picture(array)
    for feature in FEATURES:
        for kind in ("top", "bottom"):
            for rank in range(2):
                pictures[f"f{feature}_{kind}{rank}.png"] = _picture(
                    generator.uniform(size=(IMAGE_SIZE, IMAGE_SIZE, 3)))
    write_bundle(study_name, item_key, content, arrays, pictures)


def _example(feature, kind, rank, scores, token_scores) -> dict[str, object]:
    return {"question": QUESTION, "tokens": TOKENS, "activation": round(2.0 - rank / 2, 2),
            "png": f"f{feature}_{kind}{rank}.png",
            "image_gradient": scores(f"f{feature}_{kind}{rank}_gradient"),
            "token_gradient": token_scores()}


def concept_feature(number: int) -> int:
    """Return the feature of the concept item with the given number (practice first)."""
    return CONCEPT_FEATURE_BASE + number


def _write_concept_bundle(study_name: str, item_key: str, number: int, practice: bool) -> None:
    """Write a concept bundle: R_l of one datapoint and 3 top and 3 bottom R_g datapoints."""
    generator = np.random.default_rng(100 + number)
    feature = concept_feature(number)
    arrays: dict[str, np.ndarray] = {"image": generator.uniform(size=(IMAGE_SIZE, IMAGE_SIZE, 3))}

    def scores(name: str) -> dict[str, str]:
        arrays[name] = generator.normal(size=(IMAGE_SIZE, IMAGE_SIZE))
        return _map_entry(name)

    def token_scores() -> list[float]:
        return [round(float(value), 3) for value in generator.normal(size=len(TOKENS))]

    examples = {kind: [_example(feature, kind, rank, scores, token_scores) for rank in range(3)]
                for kind in ("top", "bottom")}
    # Top activations fall from 3.0 and bottom ones rise from 0.0, so every top one is larger.
    for rank in range(3):
        examples["top"][rank]["activation"] = 3.0 - rank / 2
        examples["bottom"][rank]["activation"] = rank / 10
    content = {
        "format": 1, "study": study_name, "item_key": item_key, "practice": practice,
        "feature": feature,
        "R_l": {"question": QUESTION, "tokens": TOKENS, "activation": 1.25,
                "dataset": "easy-vqa", "split": "validation", "index": number,
                "image": {"png": "image.png", "array": "image"},
                "image_gradient": scores(f"f{feature}_image_gradient"),
                "token_gradient": token_scores()},
        "R_g": {"feature": feature, **examples},
    }

    pictures = {f"{name}.png": _picture(array) for name, array in arrays.items()}
    for kind in ("top", "bottom"):
        for rank in range(3):
            pictures[f"f{feature}_{kind}{rank}.png"] = _picture(
                generator.uniform(size=(IMAGE_SIZE, IMAGE_SIZE, 3)))
    write_bundle(study_name, item_key, content, arrays, pictures)


def _write_error_bundle(
    study_name: str, item_key: str, number: int, practice: bool
) -> dict[str, object]:
    """Write an error bundle of a real easy-VQA test datapoint; return its answer key entry."""
    index, question, tokens, correct = ERROR_DATAPOINTS[number]
    model_answer = ERROR_MODEL_ANSWERS[correct]
    header = {"dataset": "easy-vqa", "split": "test", "index": index,
              "shown_answers": {"model": model_answer, "correct": correct}}
    _write_item_bundle(study_name, item_key, number, practice, None, question=question,
                       tokens=tokens, header=header)
    return {"prediction": model_answer, "ground_truth": correct, "model_correct": False}
