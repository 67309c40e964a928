"""Exports of the long table and the summary table: CSV, JSON, Markdown and LaTeX.

CSV and JSON keep every value at full precision and read back with ``read_back`` to the
same table, dtypes included. Markdown and LaTeX are for reading and for papers: a summary
column pair ``X_mean`` and ``X_std`` becomes one cell "0.62 ± 0.10" (``$\\pm$`` in LaTeX), a
pair ``X_ci_low`` and ``X_ci_high`` becomes "[0.51, 0.73]", and numbers get two decimals.
LaTeX tables use the booktabs rules (``\\toprule``, ``\\midrule``, ``\\bottomrule``), so a
document that includes them needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.json import build_table_schema

from studies.analysis import LONG_TABLE_DTYPES
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMATS", "read_back", "render_summary", "render_table", "write_exports"]

EXPORT_FORMATS = ("csv", "json", "markdown", "latex")
FILE_SUFFIXES = {"csv": ".csv", "json": ".json", "markdown": ".md", "latex": ".tex"}
LONG_TABLE_STEM = "responses"
SUMMARY_STEM = "summary"
MISSING_CELL = "n/a"

# Dtypes that ``read_back`` restores from CSV, where the file itself carries none. Columns not
# listed here are left to pandas' inference.
KNOWN_DTYPES: dict[str, str] = {
    **LONG_TABLE_DTYPES,
    "category": "str",
    "condition": "str",
    "alpha_note": "str",
    "note": "str",
    "participants": "int64",
    "simulated_participants": "int64",
    "counted_items": "int64",
    "responses": "int64",
    "coded_responses": "int64",
    "units_full_agreement": "int64",
    "alpha_bootstrap_skipped": "Int64",
    "coding_version": "Int64",
}

LATEX_SPECIAL_CHARACTERS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def check_formats(formats: Iterable[str]) -> list[str]:
    """Return the formats, lower-cased and without repeats, or raise for an unknown one."""
    checked: list[str] = []
    for fmt in formats:
        name = str(fmt).lower()
        if name not in EXPORT_FORMATS:
            raise StudyInputError(
                f"Unknown export format {fmt!r}; use one or more of {', '.join(EXPORT_FORMATS)}."
            )
        if name not in checked:
            checked.append(name)
    if not checked:
        raise StudyInputError(f"No export format given; use one or more of {', '.join(EXPORT_FORMATS)}.")
    return checked


def write_exports(
    long_table: pd.DataFrame,
    summary: pd.DataFrame,
    folder: str | Path,
    formats: Iterable[str] = EXPORT_FORMATS,
) -> list[Path]:
    """Write the long table (``responses.*``) and the summary table (``summary.*``) in each format.

    Parameters
    ----------
    long_table : DataFrame, shape (n_responses, n_columns)
    summary : DataFrame, shape (n_conditions, n_columns)
    folder : str or Path
        Created when missing; files of the same name are replaced.
    formats : iterable of str
        Any of ``EXPORT_FORMATS``.

    Returns
    -------
    list of Path
        The written files: for each format, the long table then the summary.

    Raises
    ------
    StudyInputError
        For an unknown format, or a folder that cannot be created or written.
    """
    checked = check_formats(formats)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StudyInputError(f"Cannot create the export folder {folder}: {error.strerror}.") from error

    written = []
    for fmt in checked:
        for stem, text in ((LONG_TABLE_STEM, render_table(long_table, fmt)),
                           (SUMMARY_STEM, render_summary(summary, fmt))):
            path = folder / f"{stem}{FILE_SUFFIXES[fmt]}"
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as error:
                raise StudyInputError(f"Cannot write {path}: {error.strerror}.") from error
            written.append(path)
    logger.info("wrote %d export files to %s", len(written), folder)
    return written


def render_table(table: pd.DataFrame, fmt: str) -> str:
    """Render any table as it is, with no merged columns (used for the long table).

    CSV and JSON keep full precision; Markdown and LaTeX show floats with two decimals.
    """
    (fmt,) = check_formats([fmt])
    if fmt == "csv":
        return _to_csv(table)
    if fmt == "json":
        return _to_json(table)
    header = [str(column) for column in table.columns]
    cells = [[_plain_cell(value) for value in row] for row in table.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    return _render_grid(header, cells, numeric, fmt)


def render_summary(summary: pd.DataFrame, fmt: str, *, include_notes: bool = True) -> str:
    """Render a summary table; Markdown and LaTeX merge mean and std, and the interval bounds.

    Parameters
    ----------
    summary : DataFrame
        A table from ``studies.analysis`` (one row per condition).
    fmt : str
        One of ``EXPORT_FORMATS``.
    include_notes : bool
        When False, Markdown and LaTeX leave out the ``alpha_note`` and ``note`` columns
        (the command line prints them below the table).

    Raises
    ------
    StudyInputError
        For an unknown format.
    """
    (fmt,) = check_formats([fmt])
    if fmt == "csv":
        return _to_csv(summary)
    if fmt == "json":
        return _to_json(summary)

    header, cells, numeric = _display_columns(summary, include_notes)
    return _render_grid(header, cells, numeric, fmt)


def read_back(path: str | Path) -> pd.DataFrame:
    """Read a CSV or JSON export back into the table that was written.

    CSV cells are read as written: only an empty cell is missing, so an answer such as
    "NA" or "None" stays text. Columns named in ``KNOWN_DTYPES`` get their dtype back.

    Raises
    ------
    StudyInputError
        When the file is missing or its suffix is neither ``.csv`` nor ``.json``.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyInputError(f"Export file not found: {path}.")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return pd.read_json(io.StringIO(path.read_text(encoding="utf-8")), orient="table",
                            precise_float=True)
    if suffix == ".csv":
        columns = pd.read_csv(path, nrows=0).columns
        dtypes = {column: KNOWN_DTYPES[column] for column in columns if column in KNOWN_DTYPES}
        return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""], encoding="utf-8")
    raise StudyInputError(f"Cannot read back {path}: only .csv and .json exports can be read back.")


# --------------------------------------------------------------------------------------
# CSV and JSON


def _to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")


def _to_json(table: pd.DataFrame) -> str:
    """Return the table as a pandas "table" JSON document (a schema with dtypes, then the rows).

    The rows are written with the standard json module instead of ``DataFrame.to_json``,
    whose at most 15 significant digits would change some floats on the way back.
    """
    schema = build_table_schema(table, index=False)
    rows = [
        {str(column): _json_value(value) for column, value in zip(table.columns, row, strict=True)}
        for row in table.itertuples(index=False)
    ]
    return json.dumps({"schema": schema, "data": rows}, ensure_ascii=False, allow_nan=False, indent=1) + "\n"


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --------------------------------------------------------------------------------------
# Markdown and LaTeX


def _display_columns(
    summary: pd.DataFrame, include_notes: bool
) -> tuple[list[str], list[list[str]], list[bool]]:
    """Merge ``X_mean``/``X_std`` and ``X_ci_low``/``X_ci_high`` pairs into display columns.

    Returns the header, the cells row by row, and whether each column is numeric (right-aligned).
    """
    columns = [str(c) for c in summary.columns]
    present = set(columns)
    header: list[str] = []
    getters: list[Callable[[pd.Series], str]] = []
    numeric: list[bool] = []
    for column in columns:
        if column.endswith("_mean") and f"{column[:-5]}_std" in present:
            base = column[:-5]
            header.append(f"{_label(base)} (mean ± std)")
            getters.append(lambda row, m=column, s=f"{base}_std": _mean_std_cell(row[m], row[s]))
            numeric.append(True)
        elif column.endswith("_ci_low") and f"{column[:-7]}_ci_high" in present:
            base = column[:-7]
            header.append(f"{_label(base)} 95% CI")
            getters.append(lambda row, lo=column, hi=f"{base}_ci_high": _interval_cell(row[lo], row[hi]))
            numeric.append(True)
        elif (column.endswith("_std") and f"{column[:-4]}_mean" in present) or (
            column.endswith("_ci_high") and f"{column[:-8]}_ci_low" in present
        ):
            continue
        elif column in ("alpha_note", "note") and not include_notes:
            continue
        else:
            header.append(_label(column))
            is_numeric = (pd.api.types.is_numeric_dtype(summary[column])
                          and not pd.api.types.is_bool_dtype(summary[column]))
            missing = MISSING_CELL if is_numeric else ""
            getters.append(lambda row, c=column, m=missing: _plain_cell(row[c], m))
            numeric.append(is_numeric)

    cells = [[getter(row) for getter in getters] for _, row in summary.iterrows()]
    return header, cells, numeric


def _label(column: str) -> str:
    return column.replace("_", " ")


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def _number(value: Any) -> str:
    if _is_missing(value):
        return MISSING_CELL
    text = f"{float(value):.2f}"
    # A small negative value rounds to "-0.00", which reads as a sign that is not there.
    return "0.00" if text == "-0.00" else text


def _mean_std_cell(mean: Any, std: Any) -> str:
    if _is_missing(mean):
        return MISSING_CELL
    if _is_missing(std):
        return _number(mean)
    return f"{_number(mean)} ± {_number(std)}"


def _interval_cell(low: Any, high: Any) -> str:
    if _is_missing(low) or _is_missing(high):
        return MISSING_CELL
    return f"[{_number(low)}, {_number(high)}]"


def _plain_cell(value: Any, missing: str = "") -> str:
    if _is_missing(value):
        return missing
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _number(value)
    return str(value)


def _render_grid(header: Sequence[str], cells: Sequence[Sequence[str]], numeric: Sequence[bool],
                 fmt: str) -> str:
    if fmt == "markdown":
        return _render_markdown(header, cells, numeric)
    return _render_latex(header, cells, numeric)


def _markdown_escape(text: str) -> str:
    return " ".join(text.split()).replace("|", r"\|")


def _render_markdown(header: Sequence[str], cells: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """Render a pipe table with columns padded to equal width, readable in a terminal too."""
    rows = [[_markdown_escape(h) for h in header]] + [[_markdown_escape(c) for c in row] for row in cells]
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = [cell.rjust(w) if right else cell.ljust(w)
                  for cell, w, right in zip(row, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if right else "-" * w
                             for w, right in zip(widths, numeric, strict=True)) + " |"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])]) + "\n"


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL_CHARACTERS.get(character, character) for character in " ".join(text.split()))


def _render_latex(header: Sequence[str], cells: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    alignment = "".join("r" if right else "l" for right in numeric)
    lines = [
        rf"\begin{{tabular}}{{{alignment}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_latex_escape(c) for c in row) + r" \\" for row in cells),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines) + "\n"
