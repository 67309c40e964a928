"""Tests of studies.export: round trips of CSV and JSON, and the Markdown and LaTeX tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from studies.analysis import LONG_TABLE_DTYPES, error_summary, simulation_summary
from studies.errors import StudyInputError
from studies.export import EXPORT_FORMATS, read_back, render_summary, render_table, write_exports

CONDITIONS = ["U", "U+C", "R_l+P", "MultiViz"]

# Answers chosen to break naive CSV handling: separators, quotes, a line break, and words
# that pandas reads as missing by default.
TRICKY_ANSWERS = ['red, or "blue"', "NA", "None", "line one\nline two", "50% & $x_1$ {ok} #1 ~^\\", "null"]


def long_table() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for index, (participant, condition) in enumerate(
            [("p001", "U"), ("p002", "U"), ("p003", "MultiViz"), ("p004", "MultiViz")]):
        for item in range(6):
            prediction = "red" if item % 2 else "circle"
            helpful_view = None
            if condition == "MultiViz":
                helpful_view = "features" if item % 3 else "overview"
            answer = TRICKY_ANSWERS[(item + index) % len(TRICKY_ANSWERS)] if item < 3 else prediction
            rows.append({
                "participant": participant,
                "condition": condition,
                "item": f"q{item:02d}",
                "practice": item == 0,
                "answer": answer,
                "prediction": None if item == 5 else prediction,
                "ground_truth": None if item == 5 else "red",
                "correct": None if item == 5 else answer == prediction,
                "model_correct": None if item == 5 else prediction == "red",
                "response_seconds": float(rng.random() * 10) if item != 4 else math.nan,
                "helpful_view": helpful_view,
                "confidence": None if condition == "U" else int(1 + item % 5),
                "simulated": index % 2 == 1,
                "finished": index != 3,
            })
    return pd.DataFrame(rows).astype(LONG_TABLE_DTYPES)


@pytest.fixture
def tables():
    table = long_table()
    summary = simulation_summary(table, CONDITIONS, feature_conditions={"MultiViz", "R_l+P"}, n_bootstrap=50)
    return table, summary


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_long_table_round_trip(tables, tmp_path, fmt):
    table, summary = tables
    paths = write_exports(table, summary, tmp_path, [fmt])
    read = read_back(paths[0])
    pd.testing.assert_frame_equal(read, table, check_exact=True)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_summary_round_trip(tables, tmp_path, fmt):
    table, summary = tables
    paths = write_exports(table, summary, tmp_path, [fmt])
    read = read_back(paths[1])
    pd.testing.assert_frame_equal(read, summary, check_exact=True)


def test_error_summary_round_trip(tmp_path):
    table = long_table()
    categories = [*sorted(table.loc[~table["practice"], "answer"].unique()), "unused"]
    summary = error_summary(table, CONDITIONS, categories=categories, n_bootstrap=20)
    assert "count_unused_mean" in summary.columns
    for fmt in ("csv", "json"):
        paths = write_exports(table, summary, tmp_path / fmt, [fmt])
        pd.testing.assert_frame_equal(read_back(paths[1]), summary, check_exact=True)


def test_write_exports_all_formats(tables, tmp_path):
    table, summary = tables
    folder = tmp_path / "new" / "exports"
    paths = write_exports(table, summary, folder, EXPORT_FORMATS)
    names = [path.name for path in paths]
    assert names == ["responses.csv", "summary.csv", "responses.json", "summary.json",
                     "responses.md", "summary.md", "responses.tex", "summary.tex"]
    assert all(path.is_file() and path.parent == folder for path in paths)


def test_unknown_format_named(tables, tmp_path):
    table, summary = tables
    with pytest.raises(StudyInputError, match="'docx'; use one or more of csv, json, markdown, latex"):
        write_exports(table, summary, tmp_path, ["csv", "docx"])
    assert not list(tmp_path.iterdir())
    with pytest.raises(StudyInputError, match="'html'"):
        render_summary(summary, "html")


def test_markdown_summary_has_every_condition(tables):
    _, summary = tables
    text = render_summary(summary, "markdown")
    lines = text.splitlines()
    assert lines[0].startswith("| condition ")
    assert set(lines[1]) <= set("|-: ")
    body = lines[2:]
    assert [line.split("|")[1].strip() for line in body] == CONDITIONS
    u = summary.iloc[0]
    assert f"{u['correctness_mean']:.2f} ± {u['correctness_std']:.2f}" in body[0]
    assert "no responses in this condition" in body[2]


def test_markdown_terminal_view_without_notes(tables):
    _, summary = tables
    text = render_summary(summary, "markdown", include_notes=False)
    assert "no responses in this condition" not in text
    assert "alpha note" not in text


def test_latex_summary_booktabs_and_escaping(tables):
    _, summary = tables
    text = render_summary(summary, "latex")
    lines = text.splitlines()
    assert lines[0].startswith(r"\begin{tabular}{l")
    assert lines[1] == r"\toprule"
    assert lines[3] == r"\midrule"
    assert lines[-2] == r"\bottomrule"
    assert lines[-1] == r"\end{tabular}"
    body = lines[4:-2]
    assert len(body) == len(CONDITIONS)
    assert [line.split(" & ")[0] for line in body] == ["U", "U+C", r"R\_l+P", "MultiViz"]
    u = summary.iloc[0]
    assert f"{u['correctness_mean']:.2f} $\\pm$ {u['correctness_std']:.2f}" in body[0]
    assert r"correctness (mean $\pm$ std)" in lines[2]
    assert r"alpha 95\% CI" in lines[2]
    assert all(line.endswith(r" \\") for line in lines[2:3] + body)
    # Every row has as many cells as the header.
    assert {line.count(" & ") for line in body} == {lines[2].count(" & ")}


def test_latex_long_table_escapes_special_characters(tables):
    table, _ = tables
    text = render_table(table, "latex")
    assert r"50\% \& \$x\_1\$ \{ok\} \#1 \textasciitilde{}\textasciicircum{}\textbackslash{}" in text
    assert "line one line two" in text
    assert text.count(r"\toprule") == 1
    assert text.count(r"\bottomrule") == 1
    # Header, rule lines and one line per response.
    assert len(text.splitlines()) == len(table) + 6


def test_markdown_long_table_escapes_pipes():
    table = long_table().iloc[:2].copy()
    table["answer"] = ["a | b", "c"]
    text = render_table(table, "markdown")
    assert r"a \| b" in text
    assert len(text.splitlines()) == 2 + 2


def test_read_back_rejects_other_formats(tables, tmp_path):
    table, summary = tables
    paths = write_exports(table, summary, tmp_path, ["markdown"])
    with pytest.raises(StudyInputError, match="only .csv and .json"):
        read_back(paths[0])
    with pytest.raises(StudyInputError, match="not found"):
        read_back(tmp_path / "missing.csv")
