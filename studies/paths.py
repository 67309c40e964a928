"""Where generated study material lives.

Everything generated goes under one data folder: ``MVIZ_DATA_DIR`` when set, otherwise
``data/`` at the repository root. Layout for a study named ``NAME``::

    <data>/studies/NAME/bundles/<item_id>/   one bundle per item (see studies.bundles)
    <data>/studies/NAME/answer_key.json     predictions and ground truth; never read by participant views
    <data>/studies/NAME/sparse_model/       the cached P fit of the study's model
    <data>/mviz.sqlite3                     the response store (unless MVIZ_DATABASE_URL is set)
    <data>/researcher_password              generated when no password is configured
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
STUDIES_DIR = REPOSITORY_ROOT / "studies"


def data_dir() -> Path:
    """Return the data folder (``MVIZ_DATA_DIR`` or ``<repository>/data``)."""
    return Path(os.environ.get("MVIZ_DATA_DIR", REPOSITORY_ROOT / "data"))


def study_dir(study_name: str) -> Path:
    """Return the folder of one study's generated material."""
    return data_dir() / "studies" / study_name


def bundles_dir(study_name: str) -> Path:
    return study_dir(study_name) / "bundles"


def answer_key_path(study_name: str) -> Path:
    return study_dir(study_name) / "answer_key.json"
