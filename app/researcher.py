"""The researcher area (``?researcher=1``): a password gate, then one study at a time.

After the password, the researcher picks a prepared study and sees four tabs (five for
concept studies):

- Progress: per condition, participants joined, active and finished, and responses,
  against the participants the study file asks for;
- Summary: the summary table of ``mviz analyze``, computed live from the response store;
- Downloads: the long table and the summary in every format of ``mviz export``;
- Explorer: every stage of any datapoint of the study's dataset (``app.explorer``);
- Coding, for concept studies only: the free-text concepts coded into categories and
  saved as coding versions (``app.coding_page``).

The password comes from Streamlit secrets (``researcher_password``), else from the
``MVIZ_RESEARCHER_PASSWORD`` environment variable, else from the file that ``mviz serve``
writes. It is compared in constant time and never kept: the form's field is emptied in
the submit callback, and session state holds only the outcome, a boolean.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session
from streamlit.errors import StreamlitSecretNotFoundError

from app import state
from app.coding_page import render_coding
from app.explorer import render_explorer
from studies.analysis import load_long_table
from studies.bundles import list_items
from studies.commands_analysis import (
    ALPHA_NOTE,
    MEASURE_NOTES,
    N_BOOTSTRAP,
    NO_RESPONSES_MESSAGE,
    TERMINAL_HIDDEN_COLUMNS,
    answer_key_for,
    summarize,
)
from studies.definition import StudyDefinition, load_study
from studies.errors import StudyInputError
from studies.export import (
    EXPORT_FORMATS,
    FILE_SUFFIXES,
    LONG_TABLE_STEM,
    SUMMARY_STEM,
    render_summary,
    render_table,
)
from studies.participation import ACTIVE_WINDOW, progress_by_condition
from studies.serve import PASSWORD_VARIABLE, ensure_researcher_password

logger = logging.getLogger(__name__)

PASSWORD_SECRET = "researcher_password"

# Session state keys. AUTHENTICATED_KEY is True after the right password, False after
# a wrong one, and absent before the first attempt. The password field's
# key is emptied by the submit callback, so no password stays in the session.
AUTHENTICATED_KEY = "researcher-authenticated"
PASSWORD_INPUT_KEY = "researcher-password"
STUDY_KEY = "researcher-study"

MIME_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "markdown": "text/markdown",
    "latex": "application/x-tex",
}
FORMAT_LABELS = {"csv": "CSV", "json": "JSON", "markdown": "Markdown", "latex": "LaTeX"}

TITLE = "Researcher area"
PASSWORD_LABEL = "Researcher password"
PASSWORD_BUTTON = "Open the researcher area"
PASSWORD_HELP = (
    "The password is set in Streamlit secrets (`researcher_password`), in the "
    f"`{PASSWORD_VARIABLE}` environment variable, or in the file that `mviz serve` writes "
    "and prints."
)
WRONG_PASSWORD = "Wrong password. Enter the researcher password of this server."
NO_PASSWORD = (
    "No researcher password is configured and none could be created: {reason}. Set "
    f"`{PASSWORD_VARIABLE}` or `researcher_password` in Streamlit secrets."
)
LOGOUT_BUTTON = "Log out"
NO_STUDIES = (
    "No prepared study was found in {folder}. Write a study file there and run "
    "`mviz prepare` on it."
)
SKIPPED_STUDIES = "Study files not listed ({count})"
STUDY_LABEL = "Study"
TAB_NAMES = ("Progress", "Summary", "Downloads", "Explorer")
# Shown after TAB_NAMES for concept studies only.
CODING_TAB = "Coding"


def render() -> None:
    """Draw the researcher area: the password form, or the study picker and its tabs."""
    st.title(TITLE)
    if not _password_gate():
        return
    st.sidebar.button(LOGOUT_BUTTON, key="researcher-logout", on_click=_log_out)

    studies, skipped = prepared_studies(state.studies_dir())
    if skipped:
        with st.expander(SKIPPED_STUDIES.format(count=len(skipped))):
            for problem in skipped:
                st.markdown(f"- {problem}")
    if not studies:
        st.info(NO_STUDIES.format(folder=state.studies_dir()))
        return

    by_name = {study.definition.name: study for study in studies}
    name = st.selectbox(STUDY_LABEL, list(by_name), key=STUDY_KEY,
                        format_func=lambda key: f"{by_name[key].definition.title} ({key})")
    study = by_name[name]

    try:
        engine = state.store_engine()
        state.ensure_study_synced(engine, study.definition, study.item_keys, study.practice_keys)
    except StudyInputError as error:
        logger.error("Study %r cannot be synchronized with the response store: %s", name, error)
        st.error(f"The response store cannot be opened or the study cannot be written to it: "
                 f"{error}")
        return

    has_coding = study.definition.type == "concept"
    tabs = st.tabs([*TAB_NAMES, CODING_TAB] if has_coding else list(TAB_NAMES))
    progress_tab, summary_tab, downloads_tab, explorer_tab = tabs[:len(TAB_NAMES)]
    with progress_tab:
        render_progress(engine, study)
    tables = _load_tables(engine, study)
    with summary_tab:
        render_summary_tab(study.definition, tables)
    with downloads_tab:
        render_downloads(study.definition, tables)
    with explorer_tab:
        render_explorer(study.definition)
    if has_coding:
        with tabs[len(TAB_NAMES)]:
            render_coding(study.definition, engine)


# --------------------------------------------------------------------------------------
# Password


def configured_password() -> tuple[str, str]:
    """Return the researcher password and the name of its source.

    Streamlit secrets come first, then ``MVIZ_RESEARCHER_PASSWORD``, then the password
    file of ``mviz serve``. That file is created (with a random password) only when
    neither of the first two sources is set.

    Raises
    ------
    OSError
        When the password file is missing and cannot be created.
    """
    secret = _secret_password()
    if secret:
        return secret, "Streamlit secrets"
    if os.environ.get(PASSWORD_VARIABLE):
        return os.environ[PASSWORD_VARIABLE], f"the {PASSWORD_VARIABLE} environment variable"
    return ensure_researcher_password()


def _secret_password() -> str | None:
    # st.secrets raises when no secrets file exists, and also when one cannot be parsed.
    try:
        value = st.secrets[PASSWORD_SECRET]
    except KeyError:
        return None
    except StreamlitSecretNotFoundError as error:
        logger.debug("No Streamlit secrets: %s", error)
        return None
    if value is None or value == "":
        return None
    return str(value)


def password_matches(entered: str, expected: str) -> bool:
    """Compare two passwords in constant time; an empty entry never matches."""
    if not entered or not expected:
        return False
    return hmac.compare_digest(entered.encode("utf-8"), expected.encode("utf-8"))


def _check_password() -> None:
    # Runs as the form's callback, before the page script: the field is emptied here,
    # so the entered text is gone before anything is drawn.
    entered = st.session_state.get(PASSWORD_INPUT_KEY) or ""
    st.session_state[PASSWORD_INPUT_KEY] = ""
    try:
        expected, _ = configured_password()
    except OSError as error:
        logger.error("The researcher password cannot be read or created: %s", error)
        st.session_state[AUTHENTICATED_KEY] = False
        return

    accepted = password_matches(entered, expected)
    st.session_state[AUTHENTICATED_KEY] = accepted
    if accepted:
        logger.info("A researcher logged in")
    else:
        logger.warning("Rejected a wrong researcher password")


def _log_out() -> None:
    st.session_state.pop(AUTHENTICATED_KEY, None)


def _password_gate() -> bool:
    """Return True for an authenticated session; otherwise draw the password form."""
    if st.session_state.get(AUTHENTICATED_KEY) is True:
        return True

    try:
        _, source = configured_password()
    except OSError as error:
        st.error(NO_PASSWORD.format(reason=error))
        return False
    logger.debug("The researcher password comes from %s", source)

    if st.session_state.get(AUTHENTICATED_KEY) is False:
        st.error(WRONG_PASSWORD)
    with st.form("researcher-login"):
        st.text_input(PASSWORD_LABEL, type="password", key=PASSWORD_INPUT_KEY)
        st.form_submit_button(PASSWORD_BUTTON, on_click=_check_password)
    st.caption(PASSWORD_HELP)
    return False


# --------------------------------------------------------------------------------------
# Studies


@dataclass(frozen=True)
class PreparedStudy:
    """A valid study file whose bundles are all complete."""

    definition: StudyDefinition
    path: Path
    item_keys: list[str]
    practice_keys: list[str]


def prepared_studies(studies_dir: str | Path) -> tuple[list[PreparedStudy], list[str]]:
    """Return the prepared studies among ``studies_dir/*.yaml`` and why others are left out.

    A file is left out when it is invalid, when its study has not been prepared (or has
    incomplete bundles), or when an earlier file defines a study of the same name.

    Returns
    -------
    studies : list of PreparedStudy
        In file name order.
    skipped : list of str
        One line per file left out: the file name and the reason.
    """
    studies: list[PreparedStudy] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted(Path(studies_dir).glob("*.yaml")):
        try:
            definition = load_study(path)
        except StudyInputError as error:
            skipped.append(f"{path.name}: invalid study file: {error}")
            continue
        if definition.name in seen:
            skipped.append(f"{path.name}: study {definition.name!r} is already defined by "
                           f"{seen[definition.name]}; give each study a unique name")
            continue
        seen[definition.name] = path.name
        try:
            item_keys, practice_keys = list_items(definition.name)
        except StudyInputError as error:
            skipped.append(f"{path.name}: {error}")
            continue
        studies.append(PreparedStudy(definition, path, item_keys, practice_keys))
    return studies, skipped


# --------------------------------------------------------------------------------------
# Progress


def progress_table(rows: Sequence[dict], n_items: int) -> pd.DataFrame:
    """Return the Progress tab's table from ``progress_by_condition`` rows.

    Parameters
    ----------
    rows : sequence of dict
        One per condition, as ``studies.participation.progress_by_condition`` returns them.
    n_items : int
        Items per participant, practice items included. Each finished participant
        leaves this many responses.
    """
    records = []
    for row in rows:
        target = row["target"] or 0
        records.append({
            "condition": row["condition"],
            "joined": row["joined"],
            "active": row["active"],
            "finished": row["finished"],
            "target": target,
            "finished share": row["finished"] / target if target else 0.0,
            "responses": row["responses"],
            "responses expected": target * n_items,
            "simulated": row["simulated"],
        })
    return pd.DataFrame.from_records(records, columns=[
        "condition", "joined", "active", "finished", "target", "finished share",
        "responses", "responses expected", "simulated"])


def render_progress(engine, study: PreparedStudy) -> None:
    """Draw the participants and responses per condition against the study's targets."""
    with Session(engine) as session:
        rows = progress_by_condition(session, study.definition.name)
    table = progress_table(rows, len(study.item_keys))

    finished, target = int(table["finished"].sum()), int(table["target"].sum())
    first, second, third = st.columns(3)
    first.metric("Participants finished", f"{finished} of {target}")
    second.metric("Active now", int(table["active"].sum()))
    third.metric("Responses", f"{int(table['responses'].sum())} of "
                              f"{int(table['responses expected'].sum())}")
    st.dataframe(
        table, hide_index=True,
        column_config={"finished share": st.column_config.ProgressColumn(
            "finished share", min_value=0.0, max_value=1.0, format="percent")},
    )
    hours = ACTIVE_WINDOW.total_seconds() / 3600
    st.caption(
        f"Target: participants per condition in the study file. Active: joined, not "
        f"finished, and seen in the last {hours:g} hour(s). Responses include practice "
        "items. Simulated: participants added by `mviz simulate`, counted in the other "
        "columns too.")


# --------------------------------------------------------------------------------------
# Summary and downloads


@dataclass
class StudyTables:
    """The long table of a study's responses and its summary (None without counted responses)."""

    long_table: pd.DataFrame
    summary: pd.DataFrame | None
    problem: str | None = None


def _load_tables(engine, study: PreparedStudy) -> StudyTables:
    """Read the long table from the store and summarize it as ``mviz analyze`` does.

    A concept study's long table gets the categories of the latest saved coding, and its
    summary names that coding's version.
    """
    definition = study.definition
    options: dict[str, int | None] = {}
    try:
        with Session(engine) as session:
            long_table = load_long_table(session, definition.name, answer_key_for(definition))
            if definition.type == "concept":
                from studies.coding import attach_categories

                long_table, options["coding_version"] = attach_categories(
                    long_table, session, definition.name)
    except StudyInputError as error:
        return StudyTables(pd.DataFrame(), None, str(error))

    if not (~long_table["practice"]).any():
        practice = len(long_table)
        detail = f" (only {practice} practice responses)" if practice else ""
        return StudyTables(long_table, None, f"{NO_RESPONSES_MESSAGE}{detail}.")
    try:
        summary = _cached_summary(definition.model_dump_json(), long_table, options,
                                  _definition=definition)
    except StudyInputError as error:
        return StudyTables(long_table, None, str(error))
    return StudyTables(long_table, summary)


@st.cache_data(show_spinner="Computing the summary (alpha with bootstrap intervals)...",
               max_entries=32)
def _cached_summary(definition_json: str, long_table: pd.DataFrame, options: dict, *,
                    _definition: StudyDefinition) -> pd.DataFrame:
    # The cache key is the definition's JSON, the long table's content and the options, so
    # a new response or coding computes a new summary and a rerun without one reuses the last.
    return summarize(_definition, long_table, **options)


def summary_notes(summary: pd.DataFrame, study_type: str) -> tuple[list[str], list[str]]:
    """Return the notes of a summary: per-condition warnings, then the notes on the measures.

    The warnings name each condition whose alpha is undefined (with the reason), any other
    note of a condition, and bootstrap resamples of alpha that were left out.
    """
    warnings: list[str] = []
    for row in summary.itertuples(index=False):
        if isinstance(row.alpha_note, str) and row.alpha_note:
            warnings.append(f"{row.condition}: alpha {row.alpha_note}")
        if isinstance(row.note, str) and row.note:
            warnings.append(f"{row.condition}: {row.note}")
        skipped = row.alpha_bootstrap_skipped
        if not pd.isna(skipped) and skipped:
            warnings.append(f"{row.condition}: {skipped} of {N_BOOTSTRAP} bootstrap resamples "
                            "of alpha were undefined and left out of its interval")

    notes = []
    if "coding_version" in summary.columns and len(summary):
        version = summary["coding_version"].iloc[0]
        if pd.isna(version):
            warnings.append("No coding of the concept texts is saved yet, so alpha is "
                            "undefined; code the concepts in the Coding tab and save.")
        else:
            notes.append(f"Categories: coding version {version}.")
    return warnings, [*notes, *MEASURE_NOTES[study_type], ALPHA_NOTE]


def render_summary_tab(definition: StudyDefinition, tables: StudyTables) -> None:
    """Draw the summary table (one row per condition) with its notes."""
    if tables.summary is None:
        st.info(f"Study {definition.name!r}: {tables.problem}")
        return

    long_table = tables.long_table
    counted = long_table[~long_table["practice"]]
    n_participants = counted["participant"].nunique()
    n_simulated = counted.loc[counted["simulated"], "participant"].nunique()
    st.markdown(
        f"{n_participants} participants with counted responses ({n_simulated} simulated), "
        f"{len(counted)} counted responses, {int(long_table['practice'].sum())} practice "
        "responses left out.")

    summary = tables.summary
    visible = summary.drop(columns=[c for c in TERMINAL_HIDDEN_COLUMNS if c in summary])
    st.markdown(render_summary(visible, "markdown", include_notes=False))
    warnings, measure_notes = summary_notes(summary, definition.type)
    for text in warnings:
        st.warning(text)
    for text in measure_notes:
        st.caption(text)


def download_files(
    study_name: str, long_table: pd.DataFrame, summary: pd.DataFrame
) -> list[tuple[str, str, str, str]]:
    """Return ``(label, file name, MIME type, text)`` for every download of the Downloads tab.

    The texts are those ``mviz export`` writes: ``render_table`` for the long table and
    ``render_summary`` for the summary, in each of ``EXPORT_FORMATS``.
    """
    files = []
    for fmt in EXPORT_FORMATS:
        suffix = FILE_SUFFIXES[fmt]
        files.append((f"Responses ({FORMAT_LABELS[fmt]})", f"{study_name}-{LONG_TABLE_STEM}{suffix}",
                      MIME_TYPES[fmt], render_table(long_table, fmt)))
        files.append((f"Summary ({FORMAT_LABELS[fmt]})", f"{study_name}-{SUMMARY_STEM}{suffix}",
                      MIME_TYPES[fmt], render_summary(summary, fmt)))
    return files


def render_downloads(definition: StudyDefinition, tables: StudyTables) -> None:
    """Draw a download button per table and format."""
    if tables.summary is None:
        st.info(f"Study {definition.name!r}: {tables.problem}")
        return
    st.markdown("The long table has one row per response, practice items included; the "
                "summary has one row per condition. They are the files of `mviz export`.")
    for label, file_name, mime, text in download_files(definition.name, tables.long_table,
                                                       tables.summary):
        st.download_button(label, data=text, file_name=file_name, mime=mime,
                           key=f"download-{file_name}", on_click="ignore")
