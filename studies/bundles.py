"""Item bundles on disk: the only input of the participant pages.

A bundle is a folder ``<data>/studies/<study>/bundles/<item_key>/`` with

- ``bundle.json``: the item's question, tokens, choices and every stage's scores and
  file names (format 1, documented in ``docs/bundle_format.md``);
- ``arrays.npz``: every map as a float array, so views can redraw them (opacity);
- PNG pictures whose names never contain an answer;
- ``COMPLETE``: written last. A folder without it is unfinished and is rebuilt.

A bundle is written into a temporary sibling folder and renamed into place, so a crash
never leaves a half-written bundle under the final name.

The answer key (model prediction and ground truth per item) lives in
``answer_key.json`` beside ``bundles/``. Participant pages read it only through
``practice_feedback``, after a practice answer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from studies import paths
from studies.errors import StudyInputError

BUNDLE_FORMAT = 1
COMPLETE_MARKER = "COMPLETE"


def bundle_dir(study_name: str, item_key: str) -> Path:
    return paths.bundles_dir(study_name) / item_key


def bundle_ready(study_name: str, item_key: str) -> bool:
    """Return True when the item's bundle was written completely."""
    return (bundle_dir(study_name, item_key) / COMPLETE_MARKER).is_file()


def write_bundle(
    study_name: str,
    item_key: str,
    content: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    pictures: Mapping[str, np.ndarray],
) -> Path:
    """Write one bundle atomically.

    Parameters
    ----------
    content : mapping
        The JSON document (``bundle.json``).
    arrays : mapping of str to ndarray
        Saved together in ``arrays.npz``.
    pictures : mapping of str to ndarray of shape (H, W, 3), uint8
        Saved as PNG files under their names (which must end in ``.png``).
    """
    from PIL import Image

    final = bundle_dir(study_name, item_key)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{item_key}-", dir=final.parent))
    try:
        (staging / "bundle.json").write_text(json.dumps(dict(content), indent=1))
        np.savez_compressed(staging / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        for name, picture in pictures.items():
            Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(staging / name)
        (staging / COMPLETE_MARKER).write_text("")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def load_bundle(study_name: str, item_key: str) -> dict[str, Any]:
    """Read a complete bundle's ``bundle.json``; the folder is added under ``"dir"``."""
    folder = bundle_dir(study_name, item_key)
    if not bundle_ready(study_name, item_key):
        raise StudyInputError(
            f"The bundle of item {item_key!r} of study {study_name!r} is missing or incomplete "
            f"in {folder}. Run 'mviz prepare' on the study file first."
        )
    content = json.loads((folder / "bundle.json").read_text())
    content["dir"] = folder
    return content


def load_arrays(study_name: str, item_key: str) -> dict[str, np.ndarray]:
    """Read the arrays of a bundle (maps that views may redraw)."""
    with np.load(bundle_dir(study_name, item_key) / "arrays.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


def write_item_list(study_name: str, item_keys: list[str], practice_keys: list[str]) -> None:
    """Record the study's items in order (practice first) in ``items.json``."""
    path = paths.study_dir(study_name) / "items.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"practice": practice_keys,
                "counted": [key for key in item_keys if key not in practice_keys]}
    _write_json_atomically(path, document)


def list_items(study_name: str) -> tuple[list[str], list[str]]:
    """Return ``(item_keys, practice_keys)`` of a prepared study; practice keys come first.

    Raises
    ------
    StudyInputError
        When the study was not prepared or one of its bundles is incomplete.
    """
    path = paths.study_dir(study_name) / "items.json"
    if not path.is_file():
        raise StudyInputError(
            f"Study {study_name!r} has not been prepared ({path} is missing). "
            f"Run 'mviz prepare' on its study file."
        )
    document = json.loads(path.read_text())
    item_keys = document["practice"] + document["counted"]
    unfinished = [key for key in item_keys if not bundle_ready(study_name, key)]
    if unfinished:
        raise StudyInputError(
            f"Study {study_name!r} has {len(unfinished)} incomplete bundles "
            f"(first: {unfinished[0]!r}). Run 'mviz prepare' on its study file again."
        )
    return item_keys, list(document["practice"])


def write_answer_key(study_name: str, items: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``answer_key.json``: per item key the prediction, ground truth and model_correct."""
    path = paths.answer_key_path(study_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomically(path, {"study": study_name, "items": {k: dict(v) for k, v in items.items()}})
    return path


def load_answer_key(study_name: str) -> dict[str, dict[str, Any]]:
    """Read the answer key of a prepared study (researcher, analysis and simulation only)."""
    path = paths.answer_key_path(study_name)
    if not path.is_file():
        raise StudyInputError(
            f"The answer key of study {study_name!r} is missing ({path}). "
            f"Run 'mviz prepare' on its study file."
        )
    return json.loads(path.read_text())["items"]


def practice_feedback(study_name: str, item_key: str) -> str:
    """Return the model's answer for a practice item, the only answer a participant sees.

    Raises
    ------
    StudyInputError
        When ``item_key`` is not a practice item, so counted answers can never leak
        through this function.
    """
    _, practice_keys = list_items(study_name)
    if item_key not in practice_keys:
        raise StudyInputError(f"Item {item_key!r} is not a practice item; no feedback is given.")
    return str(load_answer_key(study_name)[item_key]["prediction"])


def _write_json_atomically(path: Path, document: Any) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(document, indent=1))
    staging.replace(path)
