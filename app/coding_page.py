"""The Coding tab of the researcher area: code a concept study's free-text concepts.

Participants of a concept study write, for each feature, the concept they think it stands
for. Here the researcher groups these texts into categories with the operations of
``studies.coding`` (merge, split, rename) and saves the result as a new coding version.
The Summary tab computes alpha over the latest saved version.

The categories being edited are a *working copy* of assignments (response id -> category)
in session state, one per study. It starts from the latest saved coding, or from
``initial_assignments`` (each text's normalized form) before the first save, and only
``save_coding`` writes it to the store. Every operation runs in a button callback, before
the page script, so the Summary tab drawn in the same run already reads a coding saved by
the click.

Participants typed the texts, so they are drawn only as plain text: in data frames,
widget options and ``st.text``. Messages that repeat a text or a category name (errors of
``studies.coding`` included) escape every Markdown character first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime

import pandas as pd
import sqlalchemy
import streamlit as st
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app import state
from studies.coding import (
    CodedResponse,
    Coding,
    coding_assignments,
    concept_texts,
    initial_assignments,
    latest_coding,
    list_codings,
    merge,
    rename,
    save_coding,
    split,
    suggest_merges,
    texts_by_category,
)
from studies.definition import StudyDefinition
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ["category", "text", "feature", "item", "condition", "participant", "practice",
                "response_id"]
DEFAULT_THRESHOLD = 0.8
NO_TEXTS = "No concept responses are stored for this study yet."
NOT_SAVED = ("Categories: **not saved yet**. Each text starts in the category of its "
             "normalized form (case-folded, without punctuation).")
SAVED = "Categories: **coding version {version}**{changes}."
UNSAVED_CHANGES = ", with unsaved changes"
NEWER_VERSION = ("Coding version {latest} was saved after this working copy started from "
                 "{base}. Discard the unsaved changes to load version {latest}.")
ADDED_RESPONSES = ("{count} response(s) are not in the saved coding (they came in after "
                   "it was saved) and start in the category of their normalized text.")
UNCODED = ("{count} response(s) contain no letters or digits and stay uncoded; alpha "
           "leaves them out.")
SUGGEST_HELP = ("Suggested merges compare the mean all-MiniLM-L6-v2 embedding of each "
                "category's texts (cosine similarity). The first request loads the encoder "
                "from local files and takes a few seconds.")

# ASCII punctuation: Markdown gives each of these characters a meaning in some context,
# and a backslash makes any of them literal.
_MARKDOWN_CHARACTERS = re.compile(r"([!-/:-@\[-`{-~])")


def _key(name: str, study_name: str) -> str:
    """Return the session-state key of ``name`` for one study."""
    return f"coding-{name}-{study_name}"


def _split_responses_key(study_name: str, category: str) -> str:
    # One responses widget per category, so a stale selection of another category never
    # reaches the split.
    return f"{_key('split-responses', study_name)}-{category}"


def escape_markdown(text: str) -> str:
    """Return ``text`` with every ASCII punctuation character backslash-escaped.

    Streamlit then shows it literally in Markdown elements (``st.error``, ``st.success``):
    no HTML, link, emphasis, code span or formula.
    """
    return _MARKDOWN_CHARACTERS.sub(r"\\\1", text)


# --------------------------------------------------------------------------------------
# The tab


def render_coding(definition: StudyDefinition, engine: sqlalchemy.Engine) -> None:
    """Draw the Coding tab of a concept study: texts by category, operations, versions.

    Parameters
    ----------
    definition : StudyDefinition
        A concept study that is synchronized with the response store.
    engine : sqlalchemy.Engine
        The response store. The tab reads it on every run and writes to it only when
        the researcher presses "Save coding".
    """
    study_name = definition.name
    try:
        with Session(engine) as session:
            texts = concept_texts(session, study_name)
            latest = latest_coding(session, study_name)
            saved = coding_assignments(session, latest) if latest is not None else None
            latest_version = latest.version if latest is not None else None
            versions = version_table(session, list_codings(session, study_name))
    except StudyInputError as error:
        logger.error("The texts of study %r cannot be read: %s", study_name, error)
        st.error(escape_markdown(str(error)))
        return

    _show_message(study_name)
    if texts.empty:
        st.info(NO_TEXTS)
        _render_versions(versions)
        return

    working, added = _working_copy(study_name, texts, saved, latest_version)
    _render_status(study_name, working, saved, latest_version, added, len(texts))
    _render_texts(definition, texts, working)
    _render_operations(study_name, texts, working)
    _render_suggestions(study_name, texts, working)
    _render_save(study_name, engine, working, saved)
    _render_versions(versions)


def _working_copy(
    study_name: str,
    texts: pd.DataFrame,
    saved: dict[int, str] | None,
    latest_version: int | None,
) -> tuple[dict[int, str], int]:
    """Return the study's working copy, created when missing, and the responses added to it.

    A response without a category in the working copy (it came in after the copy or the
    saved coding was made) gets the category of its normalized text. Responses without
    letters or digits have none and stay uncoded.
    """
    assignments_key = _key("assignments", study_name)
    if assignments_key not in st.session_state:
        st.session_state[assignments_key] = dict(saved or {})
        st.session_state[_key("base", study_name)] = latest_version
    working: dict[int, str] = st.session_state[assignments_key]

    missing = texts[~texts["response_id"].isin(list(working))]
    added = initial_assignments(missing) if not missing.empty else {}
    if added:
        working = {**working, **added}
        st.session_state[assignments_key] = working
    # Only responses added to a saved coding are worth a note; before the first save every
    # response is "added" to the empty copy.
    return working, len(added) if saved is not None else 0


def _render_status(
    study_name: str,
    working: Mapping[int, str],
    saved: Mapping[int, str] | None,
    latest_version: int | None,
    added: int,
    n_texts: int,
) -> None:
    base = st.session_state.get(_key("base", study_name))
    if base is None:
        st.markdown(NOT_SAVED)
    else:
        changes = "" if working == saved and base == latest_version else UNSAVED_CHANGES
        st.markdown(SAVED.format(version=base, changes=changes))
    if latest_version is not None and base != latest_version:
        st.warning(NEWER_VERSION.format(
            latest=latest_version, base=f"version {base}" if base else "no saved version"))
    if added:
        st.caption(ADDED_RESPONSES.format(count=added))
    uncoded = n_texts - len(working)
    if uncoded:
        st.caption(UNCODED.format(count=uncoded))


def _render_texts(definition: StudyDefinition, texts: pd.DataFrame,
                  working: Mapping[int, str]) -> None:
    table = text_table(texts, working, _features(definition.name, list(texts["item"].unique())))
    overview = category_table(table)
    st.subheader("Categories")
    st.dataframe(overview, hide_index=True, key=_key("categories-table", definition.name))
    st.subheader("Texts by category")
    st.caption("One row per response, practice items included (alpha leaves practice "
               "responses out). Texts are shown as typed.")
    st.dataframe(table, hide_index=True, key=_key("texts-table", definition.name))


def _features(study_name: str, item_keys: list[str]) -> dict[str, int | None]:
    """Return the feature number of each item, read from its bundle (None when unreadable)."""
    features: dict[str, int | None] = {}
    for item_key in item_keys:
        try:
            features[item_key] = int(state.bundle(study_name, item_key)["feature"])
        except (StudyInputError, OSError, KeyError, TypeError, ValueError) as error:
            logger.warning("No feature number for item %r of study %r: %s", item_key,
                           study_name, error)
            features[item_key] = None
    return features


def text_table(
    texts: pd.DataFrame,
    assignments: Mapping[int, str],
    features: Mapping[str, int | None] | None = None,
) -> pd.DataFrame:
    """Return one row per response with its category, ordered by category, item and id.

    Parameters
    ----------
    texts : DataFrame, shape (n_responses, 6)
        The table of ``studies.coding.concept_texts``.
    assignments : mapping of int to str
        Response id -> category. Responses left out get a missing category and come last.
    features : mapping of str to int or None, optional
        Item key -> feature number.

    Returns
    -------
    DataFrame, shape (n_responses, 8)
        Columns ``TEXT_COLUMNS``.
    """
    features = features or {}
    table = texts.assign(
        category=pd.Series([assignments.get(int(response_id)) for response_id in
                            texts["response_id"]], index=texts.index, dtype="str"),
        feature=pd.Series([features.get(item) for item in texts["item"]], index=texts.index,
                          dtype="Int64"),
    )
    table = table.sort_values(["category", "item", "response_id"], na_position="last",
                              kind="stable", key=_casefold_strings)
    return table[TEXT_COLUMNS].reset_index(drop=True)


def _casefold_strings(column: pd.Series) -> pd.Series:
    return column.str.casefold() if column.name == "category" else column


def category_table(table: pd.DataFrame) -> pd.DataFrame:
    """Return one row per category of ``text_table``: counts of responses, items and
    participants, and the conditions of its responses."""
    coded = table[table["category"].notna()]
    grouped = coded.groupby("category", sort=False)
    overview = pd.DataFrame({
        "responses": grouped.size(),
        "items": grouped["item"].nunique(),
        "participants": grouped["participant"].nunique(),
        "conditions": grouped["condition"].agg(lambda values: ", ".join(sorted(set(values)))),
    }).reset_index()
    return overview


def _categories(working: Mapping[int, str]) -> list[str]:
    return sorted(set(working.values()), key=lambda name: (name.casefold(), name))


# --------------------------------------------------------------------------------------
# Operations


def _render_operations(study_name: str, texts: pd.DataFrame,
                       working: Mapping[int, str]) -> None:
    categories = _categories(working)
    st.subheader("Change the categories")
    st.caption("Changes stay in this browser session until you press **Save coding**.")
    merge_column, split_column, rename_column = st.columns(3)

    with merge_column:
        st.markdown("**Merge**")
        st.multiselect("Categories to merge", categories, key=_key("merge-categories", study_name))
        st.text_input("Name of the merged category", key=_key("merge-into", study_name),
                      help="Leave empty to keep the name of the first category picked.")
        st.button("Merge", key=_key("merge-button", study_name), on_click=_merge,
                  args=(study_name,))

    with split_column:
        st.markdown("**Split**")
        category = st.selectbox("Category to split", categories,
                                key=_key("split-category", study_name))
        if category is not None:
            by_response = texts.set_index("response_id")
            members = [response_id for response_id, name in working.items() if name == category]
            st.multiselect(
                "Responses to move", members, key=_split_responses_key(study_name, category),
                format_func=lambda response_id: _response_label(by_response, response_id))
        st.text_input("New category of the moved responses", key=_key("split-into", study_name))
        st.button("Split", key=_key("split-button", study_name), on_click=_split,
                  args=(study_name,))

    with rename_column:
        st.markdown("**Rename**")
        st.selectbox("Category to rename", categories, key=_key("rename-old", study_name))
        st.text_input("New name", key=_key("rename-new", study_name))
        st.button("Rename", key=_key("rename-button", study_name), on_click=_rename,
                  args=(study_name,))

    st.button("Discard unsaved changes", key=_key("discard-button", study_name),
              on_click=_discard, args=(study_name,))


def _response_label(by_response: pd.DataFrame, response_id: int) -> str:
    # Widget options are drawn as plain text, so the text can appear as typed.
    row = by_response.loc[response_id]
    return f"{row['text']} ({row['item']}, {row['condition']}, response {response_id})"


def _merge(study_name: str) -> None:
    selected = list(st.session_state.get(_key("merge-categories", study_name)) or [])
    into = (st.session_state.get(_key("merge-into", study_name)) or "").strip()
    if not into and selected:
        into = selected[0]
    _apply(study_name, "Merge", lambda working: merge(working, selected, into),
           f"Merged {len(selected)} categories into {into!r}.")


def _split(study_name: str) -> None:
    category = st.session_state.get(_key("split-category", study_name))
    moved = []
    if category is not None:
        moved = list(st.session_state.get(_split_responses_key(study_name, category)) or [])
    new_category = st.session_state.get(_key("split-into", study_name)) or ""
    _apply(study_name, "Split", lambda working: split(working, category, moved, new_category),
           f"Moved {len(moved)} response(s) from {category!r} to {new_category.strip()!r}.")


def _rename(study_name: str) -> None:
    old = st.session_state.get(_key("rename-old", study_name))
    new = st.session_state.get(_key("rename-new", study_name)) or ""
    _apply(study_name, "Rename", lambda working: rename(working, old, new),
           f"Renamed {old!r} to {new.strip()!r}.")


def _apply(study_name: str, operation: str, change, success: str) -> None:
    """Replace the working copy with ``change(working copy)``, or keep it and store the error."""
    working = st.session_state.get(_key("assignments", study_name))
    if working is None:
        _set_message(study_name, "error", f"{operation} failed: the page was reloaded; try again.")
        return
    try:
        changed = change(working)
    except StudyInputError as error:
        _set_message(study_name, "error", f"{operation} failed: {escape_markdown(str(error))}")
        return

    st.session_state[_key("assignments", study_name)] = changed
    _clear_operation_widgets(study_name)
    _set_message(study_name, "success", escape_markdown(success))


def _clear_operation_widgets(study_name: str) -> None:
    # The options of these widgets change with the categories, so each starts afresh.
    for name in ("merge-categories", "merge-into", "split-category", "split-into",
                 "rename-old", "rename-new"):
        st.session_state.pop(_key(name, study_name), None)


def _discard(study_name: str) -> None:
    for name in ("assignments", "base"):
        st.session_state.pop(_key(name, study_name), None)
    _clear_operation_widgets(study_name)
    _set_message(study_name, "success", "Discarded the unsaved changes.")


def _set_message(study_name: str, kind: str, text: str) -> None:
    st.session_state[_key("message", study_name)] = (kind, text)


def _show_message(study_name: str) -> None:
    """Draw the outcome of the last operation once; its text is already escaped."""
    message = st.session_state.pop(_key("message", study_name), None)
    if message is None:
        return
    kind, text = message
    if kind == "error":
        st.error(text)
    else:
        st.success(text)


# --------------------------------------------------------------------------------------
# Suggested merges


def _render_suggestions(study_name: str, texts: pd.DataFrame,
                        working: Mapping[int, str]) -> None:
    st.subheader("Suggested merges")
    st.caption(SUGGEST_HELP)
    threshold = st.slider("Minimum cosine similarity", min_value=0.0, max_value=1.0,
                          value=DEFAULT_THRESHOLD, step=0.01,
                          key=_key("threshold", study_name))
    requested_key = _key("suggestions-requested", study_name)
    if st.button("Suggest merges", key=_key("suggest-button", study_name)):
        st.session_state[requested_key] = True
    if not st.session_state.get(requested_key):
        return

    grouped = texts_by_category(texts, working)
    frozen = tuple((category, tuple(grouped[category])) for category in _categories(working))
    try:
        pairs = _all_similarities(frozen)
    except (OSError, ImportError) as error:
        logger.error("The sentence encoder for suggested merges failed to load: %s", error)
        st.error(f"The sentence encoder could not be loaded: {escape_markdown(str(error))}")
        return
    suggestions = suggestion_table(pairs, threshold)
    if suggestions.empty:
        st.info(f"No pair of categories has a cosine similarity of {threshold:.2f} or more.")
        return
    st.dataframe(suggestions, hide_index=True, key=_key("suggestions-table", study_name))


@st.cache_data(show_spinner="Embedding the texts with all-MiniLM-L6-v2...", max_entries=16)
def _all_similarities(
    categories_with_texts: tuple[tuple[str, tuple[str, ...]], ...]
) -> list[tuple[str, str, float]]:
    # Every pair (threshold -1), cached per categories and texts, so moving the slider
    # filters the cached pairs and never embeds again.
    return suggest_merges(dict(categories_with_texts), threshold=-1.0)


def suggestion_table(pairs: list[tuple[str, str, float]], threshold: float) -> pd.DataFrame:
    """Return the pairs with similarity >= ``threshold``, most similar first."""
    similar = [pair for pair in pairs if pair[2] >= threshold]
    return pd.DataFrame(similar, columns=["category", "similar category", "similarity"])


# --------------------------------------------------------------------------------------
# Saving and versions


def _render_save(study_name: str, engine: sqlalchemy.Engine, working: Mapping[int, str],
                 saved: Mapping[int, str] | None) -> None:
    st.subheader("Save")
    st.text_input("Note (optional)", key=_key("note", study_name),
                  help="What changed in this version, for the list of versions.")
    st.button("Save coding", key=_key("save-button", study_name), type="primary",
              on_click=_save, args=(study_name, engine))
    if saved is not None and dict(working) == dict(saved):
        st.caption("The categories equal the latest saved version; saving adds an "
                   "identical version.")


def _save(study_name: str, engine: sqlalchemy.Engine) -> None:
    working = st.session_state.get(_key("assignments", study_name))
    if working is None:
        _set_message(study_name, "error", "Saving failed: the page was reloaded; try again.")
        return
    note = (st.session_state.get(_key("note", study_name)) or "").strip()
    try:
        with Session(engine) as session:
            version = save_coding(session, study_name, working, note=note).version
    except StudyInputError as error:
        logger.error("Saving a coding of study %r failed: %s", study_name, error)
        _set_message(study_name, "error", f"Saving failed: {escape_markdown(str(error))}")
        return

    st.session_state[_key("base", study_name)] = version
    st.session_state.pop(_key("note", study_name), None)
    _set_message(study_name, "success", f"Saved coding version {version}.")


def version_table(session: Session, codings: list[Coding]) -> pd.DataFrame:
    """Return one row per saved coding version: time (UTC), note, responses and categories."""
    counts: dict[int, tuple[int, int]] = {}
    if codings:
        rows = session.execute(
            select(CodedResponse.coding_id, func.count(),
                   func.count(distinct(CodedResponse.category)))
            .where(CodedResponse.coding_id.in_([coding.id for coding in codings]))
            .group_by(CodedResponse.coding_id))
        counts = {coding_id: (responses, categories) for coding_id, responses, categories in rows}
    return pd.DataFrame.from_records(
        [{"version": coding.version,
          "saved at (UTC)": _utc_text(coding.created_at),
          "author": coding.author or "",
          "note": coding.note or "",
          "responses": counts.get(coding.id, (0, 0))[0],
          "categories": counts.get(coding.id, (0, 0))[1]}
         for coding in codings],
        columns=["version", "saved at (UTC)", "author", "note", "responses", "categories"])


def _utc_text(moment: datetime) -> str:
    # SQLite returns the stored UTC time without its time zone.
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _render_versions(versions: pd.DataFrame) -> None:
    st.subheader("Saved versions")
    if versions.empty:
        st.caption("No coding is saved yet.")
        return
    st.dataframe(versions, hide_index=True)


__all__ = [
    "category_table",
    "escape_markdown",
    "render_coding",
    "suggestion_table",
    "text_table",
    "version_table",
]
