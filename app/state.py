"""Resources shared across reruns: the response store, study definitions and bundles.

Streamlit reruns the page script on every click, so anything expensive is created once
per server process here. Every cache key contains what locates its data (the database
URL, the data folder, a bundle's completion time), so two studies, two data folders or
a rebuilt bundle never share an entry.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy
import streamlit as st
from sqlalchemy.orm import Session

from studies import paths
from studies.bundles import bundle_dir, list_items, load_arrays, load_bundle
from studies.definition import StudyDefinition, find_study
from studies.participation import sync_study
from studies.store import create_store, database_url

logger = logging.getLogger(__name__)

STUDIES_DIR_VARIABLE = "MVIZ_STUDIES_DIR"


def studies_dir() -> Path:
    """Return the folder scanned for study files (``MVIZ_STUDIES_DIR`` or ``studies/``)."""
    return Path(os.environ.get(STUDIES_DIR_VARIABLE, paths.STUDIES_DIR))


def load_definition(study_name: str) -> StudyDefinition:
    """Find the study file named ``study_name``; raises ``StudyInputError`` when none is."""
    return find_study(study_name, studies_dir=studies_dir())


def study_items(study_name: str) -> tuple[list[str], list[str]]:
    """Return ``(item_keys, practice_keys)``; raises ``StudyInputError`` before preparation."""
    return list_items(study_name)


def store_engine() -> sqlalchemy.Engine:
    """Return the engine of the response store configured for this process."""
    return _cached_engine(database_url())


@st.cache_resource(show_spinner=False)
def _cached_engine(url: str) -> sqlalchemy.Engine:
    logger.info("Opening the response store")
    return create_store(url)


def ensure_study_synced(
    engine: sqlalchemy.Engine,
    definition: StudyDefinition,
    item_keys: list[str],
    practice_keys: list[str],
) -> None:
    """Write the study, its conditions and items to the store once per process and content."""
    _cached_sync(
        str(engine.url),
        definition.model_dump_json(),
        tuple(item_keys),
        tuple(practice_keys),
        _engine=engine,
        _definition=definition,
    )


@st.cache_resource(show_spinner=False)
def _cached_sync(
    url: str,
    definition_json: str,
    item_keys: tuple[str, ...],
    practice_keys: tuple[str, ...],
    *,
    _engine: sqlalchemy.Engine,
    _definition: StudyDefinition,
) -> bool:
    # The leading underscores keep the engine and the definition out of the cache key;
    # the URL and the definition's JSON take their place.
    with Session(_engine) as session:
        sync_study(session, _definition, list(item_keys), list(practice_keys))
    logger.info("Synchronized study %r with %d items", _definition.name, len(item_keys))
    return True


def bundle(study_name: str, item_key: str) -> dict[str, Any]:
    """Return the item's ``bundle.json`` content, with its folder under ``"dir"``."""
    stamp = completion_stamp(study_name, item_key)
    return _cached_bundle(study_name, item_key, str(paths.data_dir()), stamp)


def bundle_arrays(study_name: str, item_key: str) -> dict[str, np.ndarray]:
    """Return the item's arrays (the maps that views redraw at another opacity)."""
    stamp = completion_stamp(study_name, item_key)
    return _cached_arrays(study_name, item_key, str(paths.data_dir()), stamp)


def completion_stamp(study_name: str, item_key: str) -> int:
    """Return the time of the bundle's COMPLETE marker in ns, or 0 when it is missing.

    A rebuilt bundle gets a new marker, so cache keys that contain this time never
    serve the old bundle's content.
    """
    marker = bundle_dir(study_name, item_key) / "COMPLETE"
    try:
        return marker.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_bundle(study_name: str, item_key: str, data_dir: str, stamp: int) -> dict[str, Any]:
    return load_bundle(study_name, item_key)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_arrays(
    study_name: str, item_key: str, data_dir: str, stamp: int
) -> dict[str, np.ndarray]:
    return load_arrays(study_name, item_key)
