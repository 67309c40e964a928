"""Analysis of study responses: correctness, Krippendorff's alpha and summary tables.

Every summary starts from the *long table*, one row per response (see ``LONG_TABLE_DTYPES``
for its columns). ``load_long_table`` builds it from the response store, and tests or other
tools may build it by hand. Practice items are kept in the long table, flagged by the
``practice`` column, and every summary drops them.

Agreement uses Krippendorff's terms: a *unit* is an item (a datapoint, or a feature in a
concept study), a *coder* is a participant, and the value is the participant's answer or
the category coded from it. ``reliability_matrix`` arranges a long table as
``(n_coders, n_units)`` and ``krippendorff_alpha`` wraps ``krippendorff.alpha`` so that the
cases where alpha is undefined return NaN with a reason instead of raising.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats

from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

__all__ = [
    "LONG_TABLE_DTYPES",
    "AlphaResult",
    "BootstrapInterval",
    "ReliabilityMatrix",
    "bootstrap_alpha",
    "concept_summary",
    "empty_long_table",
    "error_summary",
    "krippendorff_alpha",
    "load_answer_key",
    "load_long_table",
    "mean_interval",
    "participant_correctness",
    "reliability_matrix",
    "simulation_summary",
]

# Columns of the long table and their pandas dtypes. "str" columns hold NaN where a value
# is missing, "boolean" and "Int64" are pandas' nullable types.
LONG_TABLE_DTYPES: dict[str, str] = {
    "participant": "str",
    "condition": "str",
    "item": "str",
    "practice": "bool",
    "answer": "str",
    "prediction": "str",
    "ground_truth": "str",
    "correct": "boolean",
    "model_correct": "boolean",
    "response_seconds": "float64",
    "helpful_view": "str",
    "confidence": "Int64",
    "simulated": "bool",
    "finished": "bool",
}

LEVELS_OF_MEASUREMENT = ("nominal", "ordinal", "interval", "ratio")
# Long-table columns each summary reads.
BASE_COLUMNS = ("participant", "condition", "item", "practice", "simulated")
SIMULATION_COLUMNS = (*BASE_COLUMNS, "answer", "correct", "model_correct", "helpful_view")
CONCEPT_COLUMNS = (*BASE_COLUMNS, "confidence")
ERROR_COLUMNS = (*BASE_COLUMNS, "answer", "confidence")
NO_RESPONSES_NOTE = "no responses in this condition"
UNLISTED_CONDITION_NOTE = "condition not in the study definition"


# --------------------------------------------------------------------------------------
# The long table


def empty_long_table() -> pd.DataFrame:
    """Return a long table with no rows and the columns and dtypes of ``LONG_TABLE_DTYPES``."""
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in LONG_TABLE_DTYPES.items()})


def load_answer_key(
    answer_key: Mapping[str, Any] | str | Path, study_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Read an answer key and return its items: item key -> prediction, ground truth, model_correct.

    Parameters
    ----------
    answer_key : mapping, str or Path
        The path of ``answer_key.json``, its parsed document
        ``{"study": NAME, "items": {item_key: {"prediction", "ground_truth", "model_correct"}}}``,
        or the ``items`` mapping alone.
    study_name : str, optional
        When given, a document whose ``study`` names another study is rejected.

    Raises
    ------
    StudyInputError
        When the file is missing or is not JSON, the document belongs to another study, or an
        item lacks a prediction or ground truth.
    """
    source = "the answer key"
    if isinstance(answer_key, str | Path):
        path = Path(answer_key)
        source = str(path)
        if not path.is_file():
            raise StudyInputError(f"Answer key not found: {path}. Run 'mviz prepare' on the study file.")
        try:
            answer_key = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise StudyInputError(
                f"{path}: invalid JSON at line {error.lineno}: {error.msg}. "
                "Run 'mviz prepare' on the study file to rewrite it."
            ) from error

    if not isinstance(answer_key, Mapping):
        raise StudyInputError(f"{source}: expected a JSON object, got {type(answer_key).__name__}.")
    document_study = answer_key.get("study")
    if study_name is not None and document_study is not None and document_study != study_name:
        raise StudyInputError(
            f"{source} belongs to study {document_study!r}, not {study_name!r}; "
            f"use the answer key of study {study_name!r}."
        )

    items = answer_key["items"] if isinstance(answer_key.get("items"), Mapping) else answer_key
    checked: dict[str, dict[str, Any]] = {}
    for item_key, entry in items.items():
        if not isinstance(entry, Mapping) or "prediction" not in entry or "ground_truth" not in entry:
            raise StudyInputError(
                f"{source}: item {item_key!r} needs 'prediction' and 'ground_truth', got {entry!r}."
            )
        checked[str(item_key)] = dict(entry)
    return checked


def load_long_table(
    session: Any,
    study_name: str,
    answer_key: Mapping[str, Any] | str | Path | None = None,
) -> pd.DataFrame:
    """Load every response of a study from the store as a long table.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        An open session on the response store. Nothing is written.
    study_name : str
        The study's name in the store.
    answer_key : mapping, str, Path or None
        See ``load_answer_key``. Without it, ``prediction``, ``ground_truth``, ``correct`` and
        ``model_correct`` are missing in every row.

    Returns
    -------
    DataFrame, shape (n_responses, len(LONG_TABLE_DTYPES))
        Ordered by condition position, participant and answer time. ``participant`` is
        ``"p"`` followed by the participant's database id, so the token never leaves the store.
        ``correct`` (answer equals the model's prediction) is filled for simulation studies only.

    Raises
    ------
    StudyInputError
        When the study is not in the store, or a counted item of a simulation study is
        missing from the answer key.
    """
    from sqlalchemy import select

    from studies.store import Condition, Item, Participant, Response, Study

    study = session.scalar(select(Study).where(Study.name == study_name))
    if study is None:
        known = session.scalars(select(Study.name).order_by(Study.name)).all()
        raise StudyInputError(
            f"Study {study_name!r} is not in the response store (studies there: "
            f"{', '.join(known) or 'none'}). Prepare it with 'mviz prepare', then serve it "
            f"or run 'mviz simulate'."
        )
    key_items = load_answer_key(answer_key, study_name) if answer_key is not None else None

    statement = (
        select(
            Participant.id,
            Participant.simulated,
            Participant.finished_at,
            Condition.name,
            Item.item_key,
            Item.practice,
            Response.answer,
            Response.helpful_view,
            Response.confidence,
            Response.shown_at,
            Response.answered_at,
        )
        .join(Participant, Response.participant_id == Participant.id)
        .join(Condition, Participant.condition_id == Condition.id)
        .join(Item, Response.item_id == Item.id)
        .where(Item.study_id == study.id)
        .order_by(Condition.position, Participant.id, Response.answered_at, Response.id)
    )
    rows = session.execute(statement).all()
    if not rows:
        return empty_long_table()

    records = [
        {
            "participant": f"p{row.id:03d}",
            "condition": row.name,
            "item": row.item_key,
            "practice": bool(row.practice),
            "answer": row.answer,
            "helpful_view": row.helpful_view,
            "confidence": row.confidence,
            "response_seconds": _seconds_between(row.shown_at, row.answered_at),
            "simulated": bool(row.simulated),
            "finished": row.finished_at is not None,
        }
        for row in rows
    ]
    table = pd.DataFrame.from_records(records)
    return _add_answer_key(table, key_items, study.type, study_name)


def _seconds_between(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return math.nan
    # SQLite returns naive datetimes although the store writes UTC, so naive means UTC here.
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return (end - start).total_seconds()


def _add_answer_key(
    table: pd.DataFrame,
    key_items: Mapping[str, Mapping[str, Any]] | None,
    study_type: str,
    study_name: str,
) -> pd.DataFrame:
    """Fill prediction, ground truth, correct and model_correct, and set the column dtypes."""
    if key_items is None:
        table["prediction"] = None
        table["ground_truth"] = None
        table["model_correct"] = None
    else:
        if study_type == "simulation":
            counted = table.loc[~table["practice"], "item"].unique()
            missing = sorted(set(counted) - set(key_items))
            if missing:
                raise StudyInputError(
                    f"The answer key of study {study_name!r} lacks {len(missing)} answered items "
                    f"(first: {missing[0]!r}). Run 'mviz prepare' on the study file again."
                )
        table["prediction"] = [_key_value(key_items, item, "prediction") for item in table["item"]]
        table["ground_truth"] = [_key_value(key_items, item, "ground_truth") for item in table["item"]]
        table["model_correct"] = [_model_correct(key_items.get(item)) for item in table["item"]]

    if study_type == "simulation":
        table["correct"] = [
            None if prediction is None else answer == prediction
            for answer, prediction in zip(table["answer"], table["prediction"], strict=True)
        ]
    else:
        table["correct"] = None
    return table[list(LONG_TABLE_DTYPES)].astype(LONG_TABLE_DTYPES)


def _key_value(key_items: Mapping[str, Mapping[str, Any]], item: str, field: str) -> str | None:
    entry = key_items.get(item)
    return None if entry is None or entry.get(field) is None else str(entry[field])


def _model_correct(entry: Mapping[str, Any] | None) -> bool | None:
    if entry is None:
        return None
    if entry.get("prediction") is not None and entry.get("ground_truth") is not None:
        return str(entry["prediction"]) == str(entry["ground_truth"])
    value = entry.get("model_correct")
    return None if value is None else bool(value)


def _counted(long_table: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of counted items: practice responses never enter an analysis."""
    if "practice" not in long_table.columns:
        return long_table
    return long_table[~long_table["practice"].astype(bool)]


# --------------------------------------------------------------------------------------
# Krippendorff's alpha


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha, or NaN with the reason it is undefined."""

    value: float
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)


@dataclass(frozen=True)
class ReliabilityMatrix:
    """Values of a long table arranged as coders x units, with NaN where a coder gave none.

    Attributes
    ----------
    data : ndarray, shape (n_coders, n_units)
        The value codes, float, NaN for missing.
    coders, units : tuple of str
        Participant ids (rows) and item keys (columns), sorted.
    value_domain : ndarray, shape (n_values,)
        The sorted codes observed in ``data``; the ``value_domain`` given to ``krippendorff``.
    value_labels : tuple of str
        The answer or category behind each code of ``value_domain``.
    """

    data: np.ndarray
    coders: tuple[str, ...]
    units: tuple[str, ...]
    value_domain: np.ndarray
    value_labels: tuple[str, ...]


def reliability_matrix(
    long_table: pd.DataFrame,
    value_column: str,
    *,
    numeric: bool = False,
    value_order: Sequence[str] | None = None,
) -> ReliabilityMatrix:
    """Arrange the counted responses of a long table as coders x units.

    Practice rows and rows without a value in ``value_column`` are dropped.

    Parameters
    ----------
    long_table : DataFrame
        Needs the columns ``participant``, ``item`` and ``value_column``.
    value_column : str
        The column rated, for example ``"answer"`` or ``"category"``.
    numeric : bool
        When True the values are numbers (stored as text, such as ratings) and the codes are
        the numbers themselves, as the interval and ratio levels need. Otherwise each distinct
        value gets a code 0, 1, ... in sorted order, or in ``value_order`` when given (ordinal
        data needs a meaningful order).
    value_order : sequence of str, optional
        The order of the codes for non-numeric values; every observed value must appear.

    Returns
    -------
    ReliabilityMatrix

    Raises
    ------
    StudyInputError
        When a column is missing, a participant rated one item twice, a value is not numeric
        although ``numeric`` is set, or a value is missing from ``value_order``.
    """
    missing_columns = [c for c in ("participant", "item", value_column) if c not in long_table.columns]
    if missing_columns:
        raise StudyInputError(
            f"The long table lacks the column(s) {', '.join(missing_columns)}; "
            f"it has {', '.join(map(str, long_table.columns))}."
        )

    rows = _counted(long_table)
    rows = rows[rows[value_column].notna()]
    duplicated = rows.duplicated(["participant", "item"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise StudyInputError(
            f"Participant {first['participant']!r} has more than one response to item "
            f"{first['item']!r}; keep one response per participant and item."
        )

    codes, value_domain, value_labels = _encode_values(rows[value_column], value_column, numeric, value_order)
    coders = tuple(sorted(rows["participant"].astype(str).unique()))
    units = tuple(sorted(rows["item"].astype(str).unique()))
    coder_index = {coder: i for i, coder in enumerate(coders)}
    unit_index = {unit: j for j, unit in enumerate(units)}

    data = np.full((len(coders), len(units)), np.nan)
    for participant, item, code in zip(rows["participant"].astype(str), rows["item"].astype(str), codes,
                                       strict=True):
        data[coder_index[participant], unit_index[item]] = code
    return ReliabilityMatrix(data, coders, units, value_domain, value_labels)


def _encode_values(
    values: pd.Series, value_column: str, numeric: bool, value_order: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Return the code of every value, the sorted domain of codes and the label of each code."""
    if numeric:
        numbers = pd.to_numeric(values, errors="coerce")
        invalid = values[numbers.isna()]
        if len(invalid):
            raise StudyInputError(
                f"Column {value_column!r} has the non-numeric value {invalid.iloc[0]!r}; "
                "use numeric=False for categories."
            )
        codes = numbers.to_numpy(dtype=float)
        domain = np.unique(codes)
        return codes, domain, tuple(f"{v:g}" for v in domain)

    labels = values.astype(str)
    if value_order is None:
        order = sorted(labels.unique())
    else:
        order = [str(v) for v in value_order]
        unknown = sorted(set(labels) - set(order))
        if unknown:
            raise StudyInputError(
                f"Column {value_column!r} has the value {unknown[0]!r}, which is not in value_order "
                f"({', '.join(order)}); add it to value_order."
            )
    code_of = {label: float(i) for i, label in enumerate(order)}
    codes = labels.map(code_of).to_numpy(dtype=float)
    observed = np.unique(codes)
    return codes, observed, tuple(order[int(code)] for code in observed)


def krippendorff_alpha(
    reliability_data: ReliabilityMatrix | np.ndarray | Sequence[Sequence[float]],
    level_of_measurement: str = "nominal",
    *,
    value_domain: Sequence[float] | np.ndarray | None = None,
) -> AlphaResult:
    """Compute Krippendorff's alpha, returning NaN with a reason where it is undefined.

    Alpha is ``1 - D_o / D_e``, the observed over the expected disagreement among the
    values of *pairable* units (units that two or more coders rated). It is undefined, and
    this function returns NaN with a note instead of calling ``krippendorff.alpha``, when

    - fewer than two coders gave a value ("only one participant");
    - no unit was rated by two or more coders;
    - the pairable values take a single value, so ``D_e = 0``.

    Parameters
    ----------
    reliability_data : ReliabilityMatrix or array_like, shape (n_coders, n_units)
        Value codes with NaN for missing values.
    level_of_measurement : {"nominal", "ordinal", "interval", "ratio"}
    value_domain : array_like, shape (n_values,), optional
        The possible codes in order. Defaults to the matrix's ``value_domain``, or to the
        sorted observed codes for a plain array.

    Returns
    -------
    AlphaResult
        ``note`` is empty when alpha is defined.

    Raises
    ------
    StudyInputError
        For an unknown level of measurement, data that is not two-dimensional, or a value
        outside ``value_domain``.
    """
    data, domain = _validated_alpha_input(reliability_data, level_of_measurement, value_domain)

    n_coders = int((~np.isnan(data)).any(axis=1).sum())
    if n_coders == 0:
        return AlphaResult(math.nan, "undefined: no responses")
    if n_coders == 1:
        return AlphaResult(math.nan, "undefined: only one participant")

    value_counts = _value_counts(data, domain)
    return _alpha_from_value_counts(value_counts, domain, level_of_measurement)


def _validated_alpha_input(
    reliability_data: ReliabilityMatrix | np.ndarray | Sequence[Sequence[float]],
    level_of_measurement: str,
    value_domain: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    if level_of_measurement not in LEVELS_OF_MEASUREMENT:
        raise StudyInputError(
            f"Unknown level of measurement {level_of_measurement!r}; "
            f"use one of {', '.join(LEVELS_OF_MEASUREMENT)}."
        )
    if isinstance(reliability_data, ReliabilityMatrix):
        data = reliability_data.data
        if value_domain is None:
            value_domain = reliability_data.value_domain
    else:
        data = np.asarray(reliability_data, dtype=float)
    if data.ndim != 2:
        raise StudyInputError(
            f"Reliability data must be a (n_coders, n_units) matrix; got shape {data.shape}."
        )

    observed = np.unique(data[~np.isnan(data)])
    domain = observed if value_domain is None else np.asarray(value_domain, dtype=float)
    outside = observed[~np.isin(observed, domain)]
    if outside.size:
        raise StudyInputError(
            f"Reliability data contains the value {outside[0]:g}, which is not in the value domain "
            f"({', '.join(f'{v:g}' for v in domain)}); add it to value_domain."
        )
    return data, domain


def _value_counts(data: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Count, per unit, the coders who gave each value: shape (n_units, n_values)."""
    return (data.T[:, :, np.newaxis] == domain[np.newaxis, np.newaxis, :]).sum(axis=1)


def _alpha_from_value_counts(
    value_counts: np.ndarray, domain: np.ndarray, level_of_measurement: str
) -> AlphaResult:
    """Check the undefined cases on ``(n_units, n_values)`` counts, then call ``krippendorff``."""
    pairable = value_counts.sum(axis=1) >= 2
    if not pairable.any():
        return AlphaResult(math.nan, "undefined: no item was answered by two or more participants")
    pairable_values = np.flatnonzero(value_counts[pairable].sum(axis=0))
    if pairable_values.size < 2:
        return AlphaResult(
            math.nan,
            "undefined: every answer on items with two or more participants has the same value, "
            "so the expected disagreement is zero",
        )

    # krippendorff rejects a one-value domain; values only seen in single-coder units carry
    # no weight, so two are enough here.
    value = float(
        krippendorff.alpha(
            value_counts=value_counts, value_domain=domain, level_of_measurement=level_of_measurement
        )
    )
    if not math.isfinite(value):
        return AlphaResult(math.nan, "undefined: the expected disagreement is zero")
    return AlphaResult(value)


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of alpha over units."""

    low: float
    high: float
    n_bootstrap: int
    n_skipped: int


def bootstrap_alpha(
    matrix: ReliabilityMatrix,
    level_of_measurement: str = "nominal",
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> BootstrapInterval:
    """Compute a percentile bootstrap interval of Krippendorff's alpha, resampling units.

    Each of ``n_bootstrap`` resamples draws ``n_units`` units (columns) with replacement and
    keeps every coder's values on them. A resample where alpha is undefined (for example, all
    drawn units were rated by one coder or carry a single value) is skipped and counted in
    ``n_skipped``. The interval is taken over the other resamples, so with many skips it
    describes only the resamples where alpha exists.

    Parameters
    ----------
    matrix : ReliabilityMatrix
    level_of_measurement : {"nominal", "ordinal", "interval", "ratio"}
    n_bootstrap : int
        Number of resamples, at least 1.
    confidence : float
        Coverage of the interval, in (0, 1); the bounds are the ``(1 - confidence) / 2`` and
        ``(1 + confidence) / 2`` percentiles.
    random_state : int, Generator or None
        Seed of the resampling.

    Returns
    -------
    BootstrapInterval
        NaN bounds when every resample was skipped.
    """
    if n_bootstrap < 1:
        raise StudyInputError(f"n_bootstrap must be at least 1; got {n_bootstrap}.")
    if not 0 < confidence < 1:
        raise StudyInputError(f"confidence must be between 0 and 1; got {confidence}.")
    data, domain = _validated_alpha_input(matrix, level_of_measurement, None)

    rng = np.random.default_rng(random_state)
    value_counts = _value_counts(data, domain)
    n_units = value_counts.shape[0]
    values: list[float] = []
    for _ in range(n_bootstrap):
        drawn = rng.integers(0, n_units, size=n_units) if n_units else np.zeros(0, dtype=int)
        result = _alpha_from_value_counts(value_counts[drawn], domain, level_of_measurement)
        if result.defined:
            values.append(result.value)

    n_skipped = n_bootstrap - len(values)
    if n_skipped:
        logger.info("bootstrap of alpha: %d of %d resamples undefined and skipped", n_skipped, n_bootstrap)
    if not values:
        return BootstrapInterval(math.nan, math.nan, n_bootstrap, n_skipped)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return BootstrapInterval(float(low), float(high), n_bootstrap, n_skipped)


# --------------------------------------------------------------------------------------
# Means over participants


def mean_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """Return the mean, the sample standard deviation and a t-interval for the mean.

    The standard deviation uses ``ddof=1`` (the unbiased variance of a sample). The interval is
    ``mean +- t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)``, Student's t-interval, which
    assumes roughly normal values. It is not clipped, so for shares it can pass 0 or 1.
    With one value the standard deviation and the interval are NaN; with none, all four are.

    Parameters
    ----------
    values : array_like, shape (n,)
        NaN entries are ignored.

    Returns
    -------
    tuple of float
        ``(mean, std, low, high)``.
    """
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    n = array.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(array.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(array.std(ddof=1))
    half_width = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half_width, mean + half_width


def participant_correctness(long_table: pd.DataFrame) -> pd.Series:
    """Return per participant the share of counted items answered with the model's prediction.

    Rows without a ``correct`` value (no prediction in the answer key) are ignored.

    Returns
    -------
    Series, shape (n_participants,)
        Indexed by participant id; participants without a scored counted item are absent.
    """
    rows = _counted(long_table)
    rows = rows[rows["correct"].notna()]
    return rows.groupby("participant", sort=True)["correct"].agg(lambda c: float(c.astype(bool).mean()))


# --------------------------------------------------------------------------------------
# Summaries per condition


def simulation_summary(
    long_table: pd.DataFrame,
    conditions: Sequence[str],
    *,
    feature_conditions: Collection[str] | None = None,
    n_bootstrap: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Summarize a simulation study: correctness and agreement per condition.

    Only counted items enter (practice rows are dropped). Per condition:

    - ``participants``, ``simulated_participants``, ``counted_items``, ``responses``;
    - ``correctness_mean``, ``correctness_std`` over participants, where a participant's
      correctness is the share of their counted items answered with the model's
      prediction; the std uses ``ddof=1``. ``correctness_ci_low`` and ``correctness_ci_high``
      are the 95% Student t-interval of the mean (see ``mean_interval``);
    - ``correctness_model_right`` and ``correctness_model_wrong``: the same mean over
      participants, restricted to items the model got right or wrong;
    - ``features_helped_share``: in feature conditions, the share of responses that chose
      "features" to "which helped more, Overview or Features"; NaN elsewhere;
    - ``alpha``: Krippendorff's alpha (nominal) of the answers, units = items and coders =
      participants, with ``alpha_note`` saying why it is undefined, and ``alpha_ci_low``,
      ``alpha_ci_high``: a percentile bootstrap interval over items (``n_bootstrap``
      resamples, seeded) with ``alpha_bootstrap_skipped`` undefined resamples left out;
    - ``note``: set for a condition without responses, whose numbers are NaN.

    Parameters
    ----------
    long_table : DataFrame
        The long table (see ``LONG_TABLE_DTYPES``).
    conditions : sequence of str
        The study's conditions in order; one row each. Conditions found only in the long table
        come after them, noted as not in the study definition.
    feature_conditions : collection of str, optional
        The conditions that ask "which helped more". By default, those whose responses have a
        ``helpful_view``.
    n_bootstrap : int
        Resamples of the alpha interval.
    random_state : int
        Seed of the bootstrap, the same for every condition.

    Returns
    -------
    DataFrame, shape (n_conditions, 18)
    """
    _require_columns(long_table, SIMULATION_COLUMNS, "simulation_summary")
    counted = _counted(long_table)
    if feature_conditions is None:
        feature_conditions = set(counted.loc[counted["helpful_view"].notna(), "condition"])

    rows = []
    for condition, note in _conditions_with_notes(long_table, conditions):
        subset = counted[counted["condition"] == condition]
        row: dict[str, Any] = {"condition": condition, **_counts(subset)}
        per_participant = participant_correctness(subset)
        mean, std, low, high = mean_interval(per_participant.to_numpy())
        row.update(correctness_mean=mean, correctness_std=std, correctness_ci_low=low,
                   correctness_ci_high=high)
        row["correctness_model_right"] = _mean_correctness_where(subset, True)
        row["correctness_model_wrong"] = _mean_correctness_where(subset, False)
        row["features_helped_share"] = (
            _features_share(subset) if condition in feature_conditions else math.nan
        )
        row.update(_alpha_columns(subset, "answer", "nominal", n_bootstrap, random_state))
        row["note"] = NO_RESPONSES_NOTE if subset.empty else note
        rows.append(row)
    return _summary_frame(rows)


def concept_summary(
    long_table: pd.DataFrame,
    conditions: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Summarize a concept study: agreement on the coded categories and confidence.

    The long table needs a ``category`` column with the label the researcher coded for each
    free-text answer. Responses not coded yet (missing category) are left out of alpha.
    Per condition: the counts of ``simulation_summary``; ``alpha`` (nominal, units = features,
    coders = participants) with its note and bootstrap interval over features;
    ``units_full_agreement``, the number of features rated by two or more participants who
    all gave the same category; ``confidence_mean`` and ``confidence_std`` (``ddof=1``) over
    responses; ``note``.

    Returns
    -------
    DataFrame, shape (n_conditions, 15)
    """
    _require_columns(long_table, CONCEPT_COLUMNS, "concept_summary")
    table = long_table
    if "category" not in table.columns:
        table = table.assign(category=pd.Series(np.nan, index=table.index, dtype="str"))
    counted = _counted(table)

    rows = []
    for condition, note in _conditions_with_notes(table, conditions):
        subset = counted[counted["condition"] == condition]
        row: dict[str, Any] = {"condition": condition, **_counts(subset)}
        row["coded_responses"] = int(subset["category"].notna().sum())
        row.update(_alpha_columns(subset, "category", "nominal", n_bootstrap, random_state))
        if row["coded_responses"] == 0 and not subset.empty:
            row["alpha_note"] = "undefined: no response has a coded category yet"
        row["units_full_agreement"] = _units_full_agreement(subset)
        row.update(_confidence_columns(subset))
        row["note"] = NO_RESPONSES_NOTE if subset.empty else note
        rows.append(row)
    return _summary_frame(rows)


def error_summary(
    long_table: pd.DataFrame,
    conditions: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Summarize an error-categorization study: agreement, confidence and counts per category.

    The ``answer`` column contains the error category each participant chose. Per condition:
    the counts of ``simulation_summary``; ``alpha`` (nominal) over the categories with its
    note and bootstrap interval; ``confidence_mean`` and ``confidence_std`` (``ddof=1``) over
    responses; for each category ``count_<category>_mean`` and ``count_<category>_std``: how
    many counted items a participant put in that category, mean and std (``ddof=1``) over
    participants (a participant who never chose it counts 0); ``note``.

    Parameters
    ----------
    categories : sequence of str, optional
        The categories offered, in order, so that a category nobody chose still gets its
        columns. Defaults to the observed answers, sorted.

    Returns
    -------
    DataFrame, shape (n_conditions, 13 + 2 * n_categories)
    """
    _require_columns(long_table, ERROR_COLUMNS, "error_summary")
    counted = _counted(long_table)
    observed = sorted(counted["answer"].dropna().astype(str).unique())
    if categories is None:
        categories = observed
    unknown = [answer for answer in observed if answer not in categories]
    if unknown:
        raise StudyInputError(
            f"Answer {unknown[0]!r} is not one of the categories ({', '.join(categories)}); "
            "add it to categories or correct the responses."
        )
    column_names = _category_column_names(categories)

    rows = []
    for condition, note in _conditions_with_notes(long_table, conditions):
        subset = counted[counted["condition"] == condition]
        row: dict[str, Any] = {"condition": condition, **_counts(subset)}
        row.update(_alpha_columns(subset, "answer", "nominal", n_bootstrap, random_state))
        row.update(_confidence_columns(subset))
        per_participant = pd.crosstab(subset["participant"], subset["answer"].astype(str))
        for category, column in zip(categories, column_names, strict=True):
            if category in per_participant:
                counts = per_participant[category].to_numpy(dtype=float)
            else:
                counts = np.zeros(len(per_participant))
            mean, std, _, _ = mean_interval(counts)
            row[f"{column}_mean"] = mean
            row[f"{column}_std"] = std
        row["note"] = NO_RESPONSES_NOTE if subset.empty else note
        rows.append(row)
    return _summary_frame(rows)


def _require_columns(long_table: pd.DataFrame, columns: Sequence[str], summary: str) -> None:
    missing = [column for column in columns if column not in long_table.columns]
    if missing:
        raise StudyInputError(
            f"The long table lacks the column(s) {', '.join(missing)} that {summary} needs; "
            "build it with load_long_table or add them."
        )


def _conditions_with_notes(long_table: pd.DataFrame, conditions: Sequence[str]) -> list[tuple[str, str]]:
    """Return the study's conditions, then any others found in the long table, with a note."""
    listed = [(str(c), "") for c in conditions]
    known = {c for c, _ in listed}
    unlisted = [c for c in pd.unique(long_table["condition"].astype(str)) if c not in known]
    if unlisted:
        logger.warning("responses from conditions not in the study definition: %s", ", ".join(unlisted))
    return listed + [(c, UNLISTED_CONDITION_NOTE) for c in unlisted]


def _counts(subset: pd.DataFrame) -> dict[str, int]:
    simulated = subset.loc[subset["simulated"].astype(bool), "participant"] if "simulated" in subset else []
    return {
        "participants": int(subset["participant"].nunique()),
        "simulated_participants": int(pd.Series(simulated).nunique()),
        "counted_items": int(subset["item"].nunique()),
        "responses": len(subset),
    }


def _mean_correctness_where(subset: pd.DataFrame, model_correct: bool) -> float:
    rows = subset[subset["model_correct"].notna()]
    rows = rows[rows["model_correct"].astype(bool) == model_correct]
    per_participant = participant_correctness(rows)
    return float(per_participant.mean()) if len(per_participant) else math.nan


def _features_share(subset: pd.DataFrame) -> float:
    views = subset["helpful_view"].dropna().astype(str)
    return float((views == "features").mean()) if len(views) else math.nan


def _alpha_columns(
    subset: pd.DataFrame, value_column: str, level: str, n_bootstrap: int, random_state: int
) -> dict[str, Any]:
    if subset.empty:
        return {"alpha": math.nan, "alpha_ci_low": math.nan, "alpha_ci_high": math.nan,
                "alpha_bootstrap_skipped": pd.NA, "alpha_note": "undefined: no responses"}

    matrix = reliability_matrix(subset, value_column)
    result = krippendorff_alpha(matrix, level)
    if not result.defined:
        return {"alpha": math.nan, "alpha_ci_low": math.nan, "alpha_ci_high": math.nan,
                "alpha_bootstrap_skipped": pd.NA, "alpha_note": result.note}

    interval = bootstrap_alpha(matrix, level, n_bootstrap=n_bootstrap, random_state=random_state)
    return {"alpha": result.value, "alpha_ci_low": interval.low, "alpha_ci_high": interval.high,
            "alpha_bootstrap_skipped": interval.n_skipped, "alpha_note": ""}


def _units_full_agreement(subset: pd.DataFrame) -> int:
    coded = subset[subset["category"].notna()]
    per_unit = coded.groupby("item")["category"].agg(["count", "nunique"])
    return int(((per_unit["count"] >= 2) & (per_unit["nunique"] == 1)).sum())


def _confidence_columns(subset: pd.DataFrame) -> dict[str, float]:
    confidence = pd.to_numeric(subset["confidence"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    mean, std, _, _ = mean_interval(confidence)
    return {"confidence_mean": mean, "confidence_std": std}


def _category_column_names(categories: Sequence[str]) -> list[str]:
    """Return ``count_<slug>`` per category, where the slug keeps letters, digits and underscores."""
    names = []
    for category in categories:
        slug = re.sub(r"[^0-9a-z]+", "_", str(category).lower()).strip("_") or "blank"
        name = f"count_{slug}"
        if name in names:
            raise StudyInputError(
                f"Categories {categories!r} give the same column name {name!r}; "
                "rename one of them so they differ in letters or digits."
            )
        names.append(name)
    return names


def _summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a summary table with stable dtypes: counts as int64, the bootstrap skip count as Int64."""
    frame = pd.DataFrame.from_records(rows)
    # An empty note becomes missing, so that CSV, where an empty cell reads as missing, round-trips.
    for column in ("alpha_note", "note"):
        if column in frame:
            frame[column] = frame[column].map(lambda text: text if text else None)
    dtypes: dict[str, str] = {}
    for column in frame.columns:
        if column in ("condition", "alpha_note", "note"):
            dtypes[column] = "str"
        elif column in ("participants", "simulated_participants", "counted_items", "responses",
                        "coded_responses", "units_full_agreement"):
            dtypes[column] = "int64"
        elif column == "alpha_bootstrap_skipped":
            dtypes[column] = "Int64"
        else:
            dtypes[column] = "float64"
    return frame.astype(dtypes)
