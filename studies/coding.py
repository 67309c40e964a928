"""Coding of free-text concept responses into categories, and the error-category codes.

In a concept study each participant writes, for a feature, the concept they think it
stands for. The researcher codes these texts into categories, and Krippendorff's alpha is
computed over the categories, not over the raw texts. A *coding* is one assignment of
response ids to categories. ``save_coding`` stores it in the response store as a new
numbered version every time and never changes an old version, so each analysis can name
the version it used (``attach_categories`` returns it).

A typical session of the researcher::

    texts = concept_texts(session, "my-concept-study")
    assignments = initial_assignments(texts)          # normalized texts as categories
    suggest_merges(texts_by_category(texts, assignments))
    assignments = merge(assignments, ["red color", "the colour red"], into="red")
    save_coding(session, "my-concept-study", assignments, note="merged the reds")
    table, version = attach_categories(load_long_table(session, "my-concept-study"),
                                       session, "my-concept-study")

``merge``, ``split`` and ``rename`` never change their input; each returns a new
assignment dict. The coding tables join the store's ``Base``. ``create_store`` creates
them when this module was imported before it ran, and ``save_coding`` creates them when
they are missing.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, event, func, inspect, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from studies.errors import StudyInputError
from studies.store import (
    Base,
    Condition,
    Item,
    Participant,
    Response,
    Study,
    utc_now,
    write_transaction,
)

logger = logging.getLogger(__name__)

# Error categories of an error-categorization study: the stored code and the label the app
# shows. A response stores the code as its answer, and ``error_summary`` counts the codes.
ERROR_CATEGORIES: dict[str, str] = {
    "unimodal": "Unimodal perception error",
    "interaction": "Cross-modal interaction error",
    "prediction": "Prediction error",
}
ERROR_CATEGORY_CODES: tuple[str, ...] = tuple(ERROR_CATEGORIES)

# Maximum number of characters of a concept text, as typed.
CONCEPT_MAX_LENGTH = 200
CATEGORY_MAX_LENGTH = 200
# The sentence encoder reads at most this many tokens of a text; concept texts are shorter.
_ENCODER_MAX_TOKENS = 128
_APOSTROPHES = ("'", "\u2019")


# --------------------------------------------------------------------------------------
# Tables


class Coding(Base):
    """One saved version of a study's coding; versions count 1, 2, ... per study."""

    __tablename__ = "codings"
    __table_args__ = (UniqueConstraint("study_id", "version", name="uq_coding_study_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    author: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")


class CodedResponse(Base):
    """The category one coding gives one response."""

    __tablename__ = "coded_responses"
    __table_args__ = (
        UniqueConstraint("coding_id", "response_id", name="uq_coded_response_coding_response"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coding_id: Mapped[int] = mapped_column(ForeignKey("codings.id", ondelete="CASCADE"),
                                           index=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX_LENGTH))


@event.listens_for(Coding, "before_update")
@event.listens_for(CodedResponse, "before_update")
def _reject_update(mapper: Any, connection: Any, target: Any) -> None:
    raise StudyInputError(
        "a saved coding version cannot change; save the changed assignments as a new "
        "version with save_coding")


def _coding_tables_exist(session: Session) -> bool:
    connection = session.connection()
    return all(inspect(connection).has_table(table)
               for table in (Coding.__tablename__, CodedResponse.__tablename__))


def _create_coding_tables(session: Session) -> None:
    Base.metadata.create_all(session.connection(),
                             tables=[Coding.__table__, CodedResponse.__table__])


# --------------------------------------------------------------------------------------
# Reading the texts and the codings


def _concept_study(session: Session, study_name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == study_name))
    if study is None:
        raise StudyInputError(
            f"study {study_name!r} is not in the response store; serve the study or run "
            "`mviz simulate` on its study file first")
    if study.type != "concept":
        raise StudyInputError(
            f"study {study_name!r} has type {study.type!r}; only concept studies have "
            "free-text responses to code")
    return study


def _participant_label(participant_id: int) -> str:
    # The participant id of the long table (studies.analysis.load_long_table).
    return f"p{participant_id:03d}"


def concept_texts(session: Session, study_name: str) -> pd.DataFrame:
    """Return every free-text response of a concept study, one row per response.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        An open session on the response store. Nothing is written.
    study_name : str
        A concept study in the store.

    Returns
    -------
    DataFrame, shape (n_responses, 6)
        Columns ``response_id`` (int64), ``participant`` (the long table's id, such as
        ``"p001"``), ``condition``, ``item`` (the feature's item key), ``practice`` (bool)
        and ``text`` (the response as typed). Ordered by item, condition and participant.

    Raises
    ------
    StudyInputError
        When the study is not in the store or is not a concept study.
    """
    study = _concept_study(session, study_name)
    rows = session.execute(
        select(Response.id, Participant.id.label("participant_id"), Condition.name,
               Item.item_key, Item.practice, Response.answer)
        .join(Participant, Response.participant_id == Participant.id)
        .join(Condition, Participant.condition_id == Condition.id)
        .join(Item, Response.item_id == Item.id)
        .where(Item.study_id == study.id)
        .order_by(Item.position, Condition.position, Participant.id)).all()

    return pd.DataFrame({
        "response_id": pd.Series([row.id for row in rows], dtype="int64"),
        "participant": pd.Series([_participant_label(row.participant_id) for row in rows],
                                 dtype="str"),
        "condition": pd.Series([row.name for row in rows], dtype="str"),
        "item": pd.Series([row.item_key for row in rows], dtype="str"),
        "practice": pd.Series([bool(row.practice) for row in rows], dtype="bool"),
        "text": pd.Series([row.answer for row in rows], dtype="str"),
    })


def latest_coding(session: Session, study_name: str) -> Coding | None:
    """Return the highest saved coding version of a concept study, or None before the first.

    Raises
    ------
    StudyInputError
        When the study is not in the store or is not a concept study.
    """
    study = _concept_study(session, study_name)
    if not _coding_tables_exist(session):
        return None
    return session.scalar(select(Coding).where(Coding.study_id == study.id)
                          .order_by(Coding.version.desc()).limit(1))


def list_codings(session: Session, study_name: str) -> list[Coding]:
    """Return every saved coding version of a concept study, oldest first.

    Raises
    ------
    StudyInputError
        When the study is not in the store or is not a concept study.
    """
    study = _concept_study(session, study_name)
    if not _coding_tables_exist(session):
        return []
    return list(session.scalars(select(Coding).where(Coding.study_id == study.id)
                                .order_by(Coding.version)))


def coding_assignments(session: Session, coding: Coding) -> dict[int, str]:
    """Return the assignments of a saved coding: response id -> category."""
    rows = session.execute(select(CodedResponse.response_id, CodedResponse.category)
                           .where(CodedResponse.coding_id == coding.id)
                           .order_by(CodedResponse.response_id))
    return {int(response_id): category for response_id, category in rows}


# --------------------------------------------------------------------------------------
# Saving a coding


def save_coding(
    session: Session,
    study_name: str,
    assignments: Mapping[int, str],
    note: str = "",
    *,
    author: str | None = None,
) -> Coding:
    """Store ``assignments`` as a new coding version of the study, and commit.

    Every call adds a version, numbered one above the highest saved so far (1 for the
    first), even when the assignments equal the last version. Saved versions are never
    changed. Responses left out of ``assignments`` count as not coded in that version.
    Category names are stored with surrounding whitespace removed.

    Parameters
    ----------
    assignments : mapping of int to str
        Response id (``concept_texts``' ``response_id``) -> category.
    note : str
        What changed, for the version list.
    author : str, optional
        Who coded, such as the researcher's initials.

    Raises
    ------
    StudyInputError
        When the study is not a concept study in the store, ``assignments`` is empty, a
        category is empty or longer than ``CATEGORY_MAX_LENGTH``, or a response id is not
        a response of the study. Nothing is written then.
    """
    checked = _checked_assignments(assignments)
    study = _concept_study(session, study_name)
    study_id = study.id
    _check_study_responses(session, study_id, study_name, checked)

    with write_transaction(session):
        if not _coding_tables_exist(session):
            _create_coding_tables(session)
        # FOR UPDATE serializes saves on PostgreSQL and MySQL; SQLite ignores it and relies
        # on the BEGIN IMMEDIATE of write_transaction.
        session.scalar(select(Study.id).where(Study.id == study_id).with_for_update())
        highest = session.scalar(select(func.max(Coding.version))
                                 .where(Coding.study_id == study_id))
        coding = Coding(study_id=study_id, version=(highest or 0) + 1, note=note,
                        author=author, created_at=utc_now())
        session.add(coding)
        session.flush()
        session.add_all(CodedResponse(coding_id=coding.id, response_id=response_id,
                                      category=category)
                        for response_id, category in checked.items())
        version = coding.version

    logger.info("saved coding version %d of study %r: %d responses in %d categories",
                version, study_name, len(checked), len(set(checked.values())))
    return coding


def _checked_assignments(assignments: Mapping[int, str]) -> dict[int, str]:
    if not isinstance(assignments, Mapping):
        raise StudyInputError(
            f"invalid assignments of type {type(assignments).__name__}; pass a mapping of "
            "response id to category")
    if not assignments:
        raise StudyInputError("the assignments are empty; code at least one response")

    checked: dict[int, str] = {}
    for response_id, category in assignments.items():
        if isinstance(response_id, bool) or not isinstance(response_id, int | np.integer):
            raise StudyInputError(
                f"invalid response id {response_id!r}; use the integer response_id of "
                "concept_texts")
        checked[int(response_id)] = _checked_category(category, f"response {response_id}")
    return checked


def _checked_category(category: Any, where: str) -> str:
    if not isinstance(category, str) or not category.strip():
        raise StudyInputError(
            f"{where}: invalid category {category!r}; a category is a non-empty text")
    name = category.strip()
    if len(name) > CATEGORY_MAX_LENGTH:
        raise StudyInputError(
            f"{where}: the category has {len(name)} characters; shorten it to at most "
            f"{CATEGORY_MAX_LENGTH}")
    return name


def _check_study_responses(
    session: Session, study_id: int, study_name: str, assignments: Mapping[int, str]
) -> None:
    known = set(session.scalars(
        select(Response.id).join(Item, Response.item_id == Item.id)
        .where(Item.study_id == study_id)))
    unknown = sorted(set(assignments) - known)
    if unknown:
        raise StudyInputError(
            f"response {unknown[0]} is not a response of study {study_name!r} "
            f"({len(unknown)} unknown ids in all); take the ids from concept_texts")


# --------------------------------------------------------------------------------------
# Building and changing assignments


def normalize_text(text: str) -> str:
    """Return ``text`` case-folded, without punctuation and with single spaces.

    Apostrophes are removed ("don't" becomes "dont"), every other punctuation character
    becomes a space, and runs of whitespace become one space, so "The colour-red!" and
    "the colour red" both give "the colour red".
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    for apostrophe in _APOSTROPHES:
        folded = folded.replace(apostrophe, "")
    spaced = "".join(" " if unicodedata.category(character).startswith("P") else character
                     for character in folded)
    return " ".join(spaced.split())


def _texts_by_response(texts: pd.DataFrame | Mapping[int, str]) -> dict[int, str]:
    if isinstance(texts, pd.DataFrame):
        missing = [column for column in ("response_id", "text") if column not in texts.columns]
        if missing:
            raise StudyInputError(
                f"the texts table lacks the column(s) {', '.join(missing)}; build it with "
                "concept_texts")
        return {int(response_id): str(text)
                for response_id, text in zip(texts["response_id"], texts["text"], strict=True)}
    if isinstance(texts, Mapping):
        return {int(response_id): str(text) for response_id, text in texts.items()}
    raise StudyInputError(
        f"invalid texts of type {type(texts).__name__}; pass the table of concept_texts or a "
        "mapping of response id to text")


def initial_assignments(texts: pd.DataFrame | Mapping[int, str]) -> dict[int, str]:
    """Return the starting coding: each response's category is its normalized text.

    Responses whose text is only punctuation and whitespace normalize to nothing and are
    left uncoded.

    Parameters
    ----------
    texts : DataFrame or mapping of int to str
        The table of ``concept_texts`` (columns ``response_id`` and ``text``), or response
        id -> text.
    """
    by_response = _texts_by_response(texts)
    assignments: dict[int, str] = {}
    for response_id, text in by_response.items():
        normalized = normalize_text(text)
        if normalized:
            assignments[response_id] = normalized[:CATEGORY_MAX_LENGTH]
    skipped = len(by_response) - len(assignments)
    if skipped:
        logger.info("%d responses have no letters or digits and stay uncoded", skipped)
    return assignments


def texts_by_category(
    texts: pd.DataFrame | Mapping[int, str], assignments: Mapping[int, str]
) -> dict[str, list[str]]:
    """Return each category's texts, as ``suggest_merges`` takes them.

    Categories appear in order of first appearance in ``assignments``. Response ids of
    ``assignments`` without a text are skipped.
    """
    by_response = _texts_by_response(texts)
    grouped: dict[str, list[str]] = {}
    for response_id, category in assignments.items():
        texts_of_category = grouped.setdefault(category, [])
        if response_id in by_response:
            texts_of_category.append(by_response[response_id])
    return grouped


def _existing_category(assignments: Mapping[int, str], category: str, argument: str) -> str:
    existing = set(assignments.values())
    if category not in existing:
        shown = ", ".join(repr(name) for name in sorted(existing)[:10])
        more = f" and {len(existing) - 10} more" if len(existing) > 10 else ""
        raise StudyInputError(
            f"{argument}: category {category!r} is not in the assignments; existing "
            f"categories: {shown or 'none'}{more}")
    return category


def merge(assignments: Mapping[int, str], categories: Sequence[str], into: str) -> dict[int, str]:
    """Return new assignments where every response of ``categories`` is in ``into``.

    ``into`` may be one of ``categories``, another existing category or a new one.

    Raises
    ------
    StudyInputError
        When ``categories`` is empty or names a category that no response has, or
        ``into`` is not a valid category.
    """
    if isinstance(categories, str) or not categories:
        raise StudyInputError(
            f"invalid categories {categories!r}; pass a list of one or more categories to merge")
    merged = {_existing_category(assignments, category, "merge") for category in categories}
    target = _checked_category(into, "merge into")
    return {response_id: target if category in merged else category
            for response_id, category in assignments.items()}


def split(
    assignments: Mapping[int, str],
    category: str,
    response_ids: Iterable[int],
    new_category: str,
) -> dict[int, str]:
    """Return new assignments where ``response_ids`` move from ``category`` to ``new_category``.

    The other responses of ``category`` stay in it. ``new_category`` may already exist,
    in which case the responses join it.

    Raises
    ------
    StudyInputError
        When ``category`` is unknown, ``response_ids`` is empty or contains a response
        that is not in ``category``, or ``new_category`` equals ``category``.
    """
    _existing_category(assignments, category, "split")
    target = _checked_category(new_category, "split into")
    if target == category:
        raise StudyInputError(
            f"split: the new category {target!r} is the category being split; name another")
    moved = set(response_ids)
    if not moved:
        raise StudyInputError("split: no response ids given; list the responses to move")
    outside = sorted(response_id for response_id in moved
                     if assignments.get(response_id) != category)
    if outside:
        raise StudyInputError(
            f"split: response {outside[0]} is not in category {category!r} (its category: "
            f"{assignments.get(outside[0])!r}); list only responses of {category!r}")
    return {response_id: target if response_id in moved else current
            for response_id, current in assignments.items()}


def rename(assignments: Mapping[int, str], old: str, new: str) -> dict[int, str]:
    """Return new assignments where category ``old`` is called ``new``.

    Raises
    ------
    StudyInputError
        When ``old`` is unknown or ``new`` is already another category (use ``merge``).
    """
    _existing_category(assignments, old, "rename")
    target = _checked_category(new, "rename to")
    if target != old and target in set(assignments.values()):
        raise StudyInputError(
            f"rename: category {target!r} exists already; use merge to join {old!r} into it")
    return {response_id: target if category == old else category
            for response_id, category in assignments.items()}


# --------------------------------------------------------------------------------------
# Suggested merges


def suggest_merges(
    categories_with_texts: Mapping[str, Sequence[str]],
    threshold: float = 0.8,
    *,
    batch_size: int = 64,
) -> list[tuple[str, str, float]]:
    """Suggest pairs of categories that describe the same concept, most similar first.

    Each text is embedded with all-MiniLM-L6-v2: its token outputs are mean-pooled over
    the attention mask and scaled to unit length, as the model is meant to be used for
    sentence similarity. A category's vector is the mean of its texts' vectors (a category
    without texts uses its own name). The similarity of two categories is the cosine of
    their vectors.

    Parameters
    ----------
    categories_with_texts : mapping of str to sequence of str
        Category -> the texts coded into it (``texts_by_category``).
    threshold : float
        Minimum cosine similarity of a suggested pair, from -1 to 1.
    batch_size : int
        Texts per forward pass of the encoder.

    Returns
    -------
    list of (str, str, float)
        ``(category_a, category_b, similarity)`` for every pair at or above ``threshold``,
        sorted by decreasing similarity. ``category_a`` comes before ``category_b`` in
        ``categories_with_texts``.

    Raises
    ------
    StudyInputError
        For a threshold outside [-1, 1] or a batch size below 1.
    """
    if not -1.0 <= threshold <= 1.0:
        raise StudyInputError(
            f"invalid threshold {threshold!r}; use a cosine similarity from -1 to 1")
    if batch_size < 1:
        raise StudyInputError(f"invalid batch_size {batch_size!r}; use 1 or more")
    categories = list(categories_with_texts)
    if len(categories) < 2:
        return []

    texts_per_category = []
    for category in categories:
        texts = [str(text).strip() for text in categories_with_texts[category]]
        texts = [text for text in texts if text] or [str(category)]
        texts_per_category.append(texts)
    unique_texts = sorted({text for texts in texts_per_category for text in texts})
    embeddings = dict(zip(unique_texts, _sentence_embeddings(unique_texts, batch_size),
                          strict=True))

    # Category vectors: shape (n_categories, embedding_dim), unit length.
    vectors = np.stack([np.mean([embeddings[text] for text in texts], axis=0)
                        for texts in texts_per_category])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T

    pairs = [(categories[a], categories[b], float(similarity[a, b]))
             for a in range(len(categories)) for b in range(a + 1, len(categories))
             if similarity[a, b] >= threshold]
    pairs.sort(key=lambda pair: -pair[2])
    return pairs


def _sentence_embeddings(texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Embed texts with MiniLM: shape (n_texts, 384), each row of unit length."""
    import torch

    from engine.models.easyvqa_net import load_minilm, mean_pool

    encoder, tokenizer = load_minilm()
    batches = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(list(texts[start:start + batch_size]), padding=True,
                                truncation=True, max_length=_ENCODER_MAX_TOKENS,
                                return_tensors="pt")
            hidden = encoder(input_ids=encoded["input_ids"],
                             attention_mask=encoded["attention_mask"]).last_hidden_state
            pooled = mean_pool(hidden, encoded["attention_mask"])
            batches.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(batches).astype(np.float64)


# --------------------------------------------------------------------------------------
# Analysis


def attach_categories(
    long_table: pd.DataFrame, session: Session, study_name: str
) -> tuple[pd.DataFrame, int | None]:
    """Add the ``category`` column of the latest coding to a concept study's long table.

    Each row gets the category that the latest saved coding gives its response (matched by
    participant and item), and NaN when that coding leaves the response uncoded or no
    coding was saved yet. ``concept_summary`` computes alpha over this column.

    Parameters
    ----------
    long_table : DataFrame, shape (n_responses, n_columns)
        The study's long table (``studies.analysis.load_long_table``). An existing
        ``category`` column is replaced.
    session : sqlalchemy.orm.Session
        An open session on the response store. Nothing is written.
    study_name : str
        A concept study in the store.

    Returns
    -------
    tuple of (DataFrame, int or None)
        A copy of ``long_table`` with the ``category`` column (dtype ``str``), and the
        coding version used (None when no coding was saved).

    Raises
    ------
    StudyInputError
        When the long table lacks ``participant`` or ``item``, or the study is not a
        concept study in the store.
    """
    missing = [column for column in ("participant", "item") if column not in long_table.columns]
    if missing:
        raise StudyInputError(
            f"the long table lacks the column(s) {', '.join(missing)}; build it with "
            "load_long_table")
    coding = latest_coding(session, study_name)

    categories: dict[tuple[str, str], str] = {}
    version = None
    if coding is not None:
        version = coding.version
        rows = session.execute(
            select(Response.participant_id, Item.item_key, CodedResponse.category)
            .join(Response, CodedResponse.response_id == Response.id)
            .join(Item, Response.item_id == Item.id)
            .where(CodedResponse.coding_id == coding.id))
        categories = {(_participant_label(participant_id), item_key): category
                      for participant_id, item_key, category in rows}

    table = long_table.copy()
    table["category"] = pd.Series(
        [categories.get((str(participant), str(item)))
         for participant, item in zip(table["participant"], table["item"], strict=True)],
        index=table.index, dtype="str")
    return table, version


__all__ = [
    "CATEGORY_MAX_LENGTH",
    "CONCEPT_MAX_LENGTH",
    "ERROR_CATEGORIES",
    "ERROR_CATEGORY_CODES",
    "CodedResponse",
    "Coding",
    "attach_categories",
    "coding_assignments",
    "concept_texts",
    "initial_assignments",
    "latest_coding",
    "list_codings",
    "merge",
    "normalize_text",
    "rename",
    "save_coding",
    "split",
    "suggest_merges",
    "texts_by_category",
]
