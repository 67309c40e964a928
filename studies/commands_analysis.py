"""The ``mviz analyze`` and ``mviz export`` commands.

Both read a study's responses from the response store, join the answer key, and summarize
each condition (``studies.analysis``). ``analyze`` prints the summary; ``export`` writes the
long table and the summary in the requested formats (``studies.export``). Invalid input
raises ``StudyInputError``, which the command line turns into a message and exit code 2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from studies import paths
from studies.definition import StudyDefinition, load_study
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
NO_RESPONSES_MESSAGE = "no responses yet: run the study or `mviz simulate` first"

# Columns the terminal table leaves out to stay readable; the exports keep them.
TERMINAL_HIDDEN_COLUMNS = ("simulated_participants", "alpha_bootstrap_skipped")

MEASURE_NOTES = {
    "simulation": (
        "correctness: share of a participant's counted items answered with the model's prediction; "
        "mean ± std (ddof=1) over participants, 95% CI: Student t-interval of the mean (not clipped "
        "to [0, 1]).",
        "correctness model right/wrong: the same mean on the items the model got right or wrong.",
        "features helped share: share of 'features' answers to 'which helped more' (feature conditions).",
    ),
    "concept": (
        "alpha: over the coded categories; units full agreement: features where two or more "
        "participants gave the same category.",
        "confidence: mean ± std (ddof=1) over responses.",
    ),
    "error": (
        "alpha: over the chosen error categories; confidence: mean ± std (ddof=1) over responses.",
        "count <category>: items a participant put in the category, mean ± std over participants.",
    ),
}
ALPHA_NOTE = (
    f"alpha: Krippendorff's alpha (nominal), units = items, coders = participants; 95% CI: percentile "
    f"bootstrap over items ({N_BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}). Practice items never count."
)


@dataclass
class StudyTables:
    """A study's definition, long table and summary, and the store URL with its password masked."""

    definition: StudyDefinition
    long_table: pd.DataFrame
    summary: pd.DataFrame
    store_url: str


def command_analyze(study_file: str, database_url: str | None) -> int:
    """Print the summary table of a study (one row per condition) and its notes.

    Raises
    ------
    StudyInputError
        When the study file is invalid, the store cannot be opened, the study is not in the
        store, or it has no counted responses yet.
    """
    from studies.export import render_summary

    tables = load_study_tables(study_file, database_url)
    definition = tables.definition
    long_table = tables.long_table
    counted = long_table[~long_table["practice"]]
    n_participants = counted["participant"].nunique()
    n_simulated = counted.loc[counted["simulated"], "participant"].nunique()

    print(f"Study {definition.name} ({definition.type}), store {tables.store_url}")
    print(f"{n_participants} participants with counted responses ({n_simulated} simulated), "
          f"{len(counted)} counted responses, {int(long_table['practice'].sum())} practice responses "
          "left out.")
    print()
    visible = tables.summary.drop(columns=[c for c in TERMINAL_HIDDEN_COLUMNS if c in tables.summary])
    print(render_summary(visible, "markdown", include_notes=False), end="")
    print()
    for line in _notes(tables.summary, definition.type):
        print(line)
    return 0


def command_export(
    study_file: str, formats: list[str], output_dir: str | None, database_url: str | None
) -> int:
    """Write the long table and the summary of a study, and print the paths written.

    The default folder is ``<data>/studies/NAME/exports/``.

    Raises
    ------
    StudyInputError
        For an unknown format, and in the cases of ``command_analyze``.
    """
    from studies.export import check_formats, write_exports

    checked = check_formats(formats)
    tables = load_study_tables(study_file, database_url)
    folder = Path(output_dir) if output_dir else paths.study_dir(tables.definition.name) / "exports"
    for path in write_exports(tables.long_table, tables.summary, folder, checked):
        print(path)
    return 0


def load_study_tables(study_file: str, database_url: str | None) -> StudyTables:
    """Load a study's definition, its long table from the store, and its summary.

    Raises
    ------
    StudyInputError
        When the study file is invalid, the store cannot be opened, the study is not in the
        store, the answer key of a simulation study is missing, or no counted response exists.
    """
    from sqlalchemy.orm import Session

    from studies.analysis import load_long_table

    definition = load_study(study_file)
    engine, store_url = _open_store(database_url)
    coding_version = None
    try:
        with Session(engine) as session:
            long_table = load_long_table(session, definition.name, answer_key_for(definition))
            if definition.type == "concept":
                from studies.coding import attach_categories

                long_table, coding_version = attach_categories(long_table, session,
                                                               definition.name)
    finally:
        engine.dispose()

    if not (~long_table["practice"]).any():
        practice = len(long_table)
        detail = f" (only {practice} practice responses)" if practice else ""
        raise StudyInputError(f"Study {definition.name!r}: {NO_RESPONSES_MESSAGE}{detail}.")
    summary = summarize(definition, long_table, coding_version=coding_version)
    return StudyTables(definition, long_table, summary, store_url)


def summarize(
    definition: StudyDefinition, long_table: pd.DataFrame, *, coding_version: int | None = None
) -> pd.DataFrame:
    """Return the summary table for the study's type, conditions in the study's order.

    A concept study's summary gets a ``coding_version`` column: the version of the coding
    whose categories the long table carries (``studies.coding.attach_categories``), or
    missing when none was saved.
    """
    from studies.analysis import concept_summary, error_summary, simulation_summary

    options = {"n_bootstrap": N_BOOTSTRAP, "random_state": BOOTSTRAP_SEED}
    if definition.type == "simulation":
        return simulation_summary(long_table, definition.conditions,
                                  feature_conditions=definition.feature_conditions, **options)
    if definition.type == "concept":
        summary = concept_summary(long_table, definition.conditions, **options)
        summary.insert(1, "coding_version",
                       pd.array([coding_version] * len(summary), dtype="Int64"))
        return summary
    from studies.coding import ERROR_CATEGORY_CODES

    # Every category gets its count columns, also where no participant chose it.
    return error_summary(long_table, definition.conditions, categories=ERROR_CATEGORY_CODES,
                         **options)


def answer_key_for(definition: StudyDefinition) -> Path | None:
    """Return the answer key path: required for simulation studies, used by error studies when present."""
    path = paths.answer_key_path(definition.name)
    if definition.type == "simulation":
        if not path.is_file():
            raise StudyInputError(
                f"The answer key of study {definition.name!r} is missing ({path}); correctness needs "
                "the model's predictions. Run 'mviz prepare' on the study file."
            )
        return path
    if definition.type == "error" and path.is_file():
        return path
    return None


def _open_store(database_url: str | None):
    """Open an existing response store; return the engine and the URL with its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from studies.store import create_store, mask_url
    from studies.store import database_url as default_database_url

    url_text = database_url or default_database_url()
    masked = mask_url(url_text)
    # create_store would create an empty SQLite file, but analysis only reads an existing store.
    try:
        url = make_url(url_text)
    except ArgumentError:
        url = None  # create_store raises StudyInputError for an invalid URL.
    if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not url.database.startswith("file:") and not Path(url.database).is_file():
            raise StudyInputError(
                f"No response store at {masked}: the file does not exist. Check --database-url or "
                f"MVIZ_DATABASE_URL; if the URL is right, {NO_RESPONSES_MESSAGE}."
            )
    return create_store(url_text), masked


def _notes(summary: pd.DataFrame, study_type: str) -> list[str]:
    lines = ["Notes:"]
    for row in summary.itertuples(index=False):
        for text in (row.note, row.alpha_note):
            if isinstance(text, str) and text:
                lines.append(f"- {row.condition}: {text}")
        skipped = row.alpha_bootstrap_skipped
        if not pd.isna(skipped) and skipped:
            lines.append(f"- {row.condition}: {skipped} of {N_BOOTSTRAP} bootstrap resamples of alpha "
                         "were undefined and left out of its interval")
    if "coding_version" in summary.columns:
        version = summary["coding_version"].iloc[0] if len(summary) else pd.NA
        lines.append(f"- categories: coding version {version}" if not pd.isna(version) else
                     "- categories: no coding saved yet, so alpha is undefined; code the "
                     "concepts in the Coding tab of the researcher area and save")
    lines.extend(f"- {text}" for text in MEASURE_NOTES[study_type])
    lines.append(f"- {ALPHA_NOTE}")
    return lines
