"""The researcher area through AppTest: password gate, progress, summary, downloads, explorer.

Every test runs the real app script on a real SQLite store in ``tmp_path`` with a study
from ``app_fixtures`` and participants from ``studies.simulate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from app_fixtures import APP_SCRIPT, FixtureStudy, build_study
from sqlalchemy.orm import Session
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from app import explorer, researcher
from studies.bundles import list_items, load_answer_key, load_bundle
from studies.commands_analysis import TERMINAL_HIDDEN_COLUMNS, load_study_tables
from studies.definition import load_study
from studies.export import EXPORT_FORMATS, FILE_SUFFIXES, render_summary, render_table
from studies.participation import progress_by_condition
from studies.serve import PASSWORD_VARIABLE, password_file
from studies.simulate import simulate_participants

TIMEOUT_S = 60
PASSWORD = "correct horse battery staple"
CONDITIONS = ["U", "MultiViz"]
# Three simulated participants over two conditions: two in one (alpha defined) and one in
# the other (alpha undefined, which the summary must name).
N_PARTICIPANTS = 3


@pytest.fixture
def study(monkeypatch: pytest.MonkeyPatch, tmp_path) -> FixtureStudy:
    built = build_study(monkeypatch, tmp_path, CONDITIONS, n_practice=1, n_counted=3,
                        participants_per_condition=2)
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    return built


@pytest.fixture
def simulated(study: FixtureStudy) -> FixtureStudy:
    definition = load_study(study_file(study))
    item_keys, practice_keys = list_items(study.name)
    choices = {key: load_bundle(study.name, key)["choices"] for key in item_keys}
    with Session(study.engine()) as session:
        simulate_participants(session, definition, item_keys, practice_keys,
                              load_answer_key(study.name), choices,
                              participants=N_PARTICIPANTS, random_state=3)
    return study


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Record the data of every file the app hands to the media file manager, by file name."""
    recorded: dict[str, bytes] = {}
    original = MediaFileManager.add

    def add(self, path_or_data, mimetype, coordinates, file_name=None, **kwargs):
        if file_name is not None:
            recorded[file_name] = path_or_data
        return original(self, path_or_data, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", add)
    return recorded


def study_file(study: FixtureStudy) -> str:
    return str(study.studies_dir / f"{study.name}.yaml")


def open_area(**secrets: str) -> AppTest:
    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    app.query_params["researcher"] = "1"
    for name, value in secrets.items():
        app.secrets[name] = value
    return app.run()


def log_in(app: AppTest, password: str) -> AppTest:
    app.text_input(key=researcher.PASSWORD_INPUT_KEY).input(password)
    [submit] = [button for button in app.button if button.label == researcher.PASSWORD_BUTTON]
    return submit.click().run()


def walk(block: Any) -> Iterator[Any]:
    yield block
    for child in getattr(block, "children", {}).values():
        yield from walk(child)


def page_protos(app: AppTest) -> str:
    """Return the text of every element proto sent to the browser."""
    return "\n".join(str(node.proto) for node in walk(app._tree) if hasattr(node, "proto"))


def state_text(app: AppTest) -> str:
    """Return session state as text, internal widget states included (its repr lists them)."""
    return repr(app.session_state)


def test_gate_wrong_password_shows_error_only(study):
    app = log_in(open_area(), "not the password")

    assert not app.exception
    assert [error.value for error in app.error] == [researcher.WRONG_PASSWORD]
    assert len(app.dataframe) == 0
    assert len(app.tabs) == 0
    assert len(app.download_button) == 0
    assert app.session_state[researcher.AUTHENTICATED_KEY] is False


def test_gate_empty_password_is_rejected(study):
    app = log_in(open_area(), "")

    assert [error.value for error in app.error] == [researcher.WRONG_PASSWORD]
    assert len(app.tabs) == 0


def test_gate_right_password_shows_progress(simulated):
    app = log_in(open_area(), PASSWORD)

    assert not app.exception
    assert len(app.error) == 0
    assert [tab.label for tab in app.tabs] == list(researcher.TAB_NAMES)
    with Session(simulated.engine()) as session:
        rows = progress_by_condition(session, simulated.name)
    expected = researcher.progress_table(rows, len(simulated.item_keys))
    shown = app.dataframe[0].value
    assert list(shown["condition"]) == CONDITIONS
    assert list(shown["joined"]) == list(expected["joined"])
    assert list(shown["finished"]) == list(expected["finished"])
    assert list(shown["responses"]) == list(expected["responses"])
    assert sorted(shown["joined"]) == [1, 2]
    assert int(shown["responses"].sum()) == N_PARTICIPANTS * len(simulated.item_keys)
    assert list(shown["target"]) == [2, 2]


def test_summary_matches_analyze_command(simulated):
    app = log_in(open_area(), PASSWORD)

    tables = load_study_tables(study_file(simulated), None)
    visible = tables.summary.drop(columns=list(TERMINAL_HIDDEN_COLUMNS))
    expected = render_summary(visible, "markdown", include_notes=False)
    # Streamlit strips the final newline of a Markdown body.
    assert expected.rstrip("\n") in [markdown.value for markdown in app.markdown]


def test_summary_names_undefined_alpha(simulated):
    app = log_in(open_area(), PASSWORD)

    with Session(simulated.engine()) as session:
        rows = progress_by_condition(session, simulated.name)
    alone = [row["condition"] for row in rows if row["joined"] == 1]
    assert len(alone) == 1
    warnings = [warning.value for warning in app.warning]
    assert f"{alone[0]}: alpha undefined: only one participant" in warnings


def test_summary_without_responses_informs(study):
    app = log_in(open_area(), PASSWORD)

    assert not app.exception
    infos = [info.value for info in app.info]
    assert any("no responses yet" in text for text in infos)
    assert len(app.download_button) == 0


def test_downloads_equal_export_functions(simulated, downloads):
    app = log_in(open_area(), PASSWORD)

    assert not app.exception
    tables = load_study_tables(study_file(simulated), None)
    assert len(app.download_button) == 2 * len(EXPORT_FORMATS)
    for fmt in EXPORT_FORMATS:
        suffix = FILE_SUFFIXES[fmt]
        summary_data = downloads[f"{simulated.name}-summary{suffix}"]
        assert summary_data == render_summary(tables.summary, fmt).encode("utf-8")
        responses_data = downloads[f"{simulated.name}-responses{suffix}"]
        assert responses_data == render_table(tables.long_table, fmt).encode("utf-8")


def test_password_absent_from_page_and_state(simulated):
    app = open_area()
    app = log_in(app, PASSWORD)
    assert app.session_state[researcher.AUTHENTICATED_KEY] is True

    assert PASSWORD not in page_protos(app)
    assert researcher.PASSWORD_INPUT_KEY in state_text(app)
    assert PASSWORD not in state_text(app)
    assert PASSWORD not in str(dict(app.query_params))

    rerun = app.run()
    assert PASSWORD not in page_protos(rerun)
    assert PASSWORD not in state_text(rerun)


def test_wrong_password_absent_from_state(study):
    attempt = "a wrong attempt 123"
    app = log_in(open_area(), attempt)

    assert attempt not in page_protos(app)
    assert attempt not in state_text(app)


def test_secrets_take_precedence_over_environment(study):
    from_secrets = "password from secrets"

    rejected = log_in(open_area(researcher_password=from_secrets), PASSWORD)
    assert [error.value for error in rejected.error] == [researcher.WRONG_PASSWORD]

    accepted = log_in(open_area(researcher_password=from_secrets), from_secrets)
    assert accepted.session_state[researcher.AUTHENTICATED_KEY] is True
    assert len(accepted.tabs) == len(researcher.TAB_NAMES)


def test_environment_password_creates_no_file(study):
    log_in(open_area(), PASSWORD)

    assert not password_file().exists()


def test_password_file_used_without_other_source(study, monkeypatch):
    monkeypatch.delenv(PASSWORD_VARIABLE)
    password_file().write_text("from the file\n")

    app = log_in(open_area(), "from the file")

    assert app.session_state[researcher.AUTHENTICATED_KEY] is True
    assert password_file().read_text() == "from the file\n"


def test_log_out_returns_to_gate(simulated):
    app = log_in(open_area(), PASSWORD)
    app.button(key="researcher-logout").click().run()

    assert researcher.AUTHENTICATED_KEY not in app.session_state
    assert len(app.tabs) == 0
    assert len(app.text_input) == 1


def test_unprepared_study_is_not_listed(simulated):
    unprepared = simulated.studies_dir / "unprepared.yaml"
    unprepared.write_text(
        (simulated.studies_dir / f"{simulated.name}.yaml").read_text()
        .replace(f"name: {simulated.name}", "name: not-prepared-yet"))

    app = log_in(open_area(), PASSWORD)

    assert app.selectbox(key=researcher.STUDY_KEY).options == [
        f"Guess the answers of a test model ({simulated.name})"]
    skipped = "\n".join(markdown.value for markdown in app.markdown)
    assert "unprepared.yaml" in skipped
    assert "not-prepared-yet" in skipped


def test_explorer_rejects_index_out_of_range(simulated):
    app = log_in(open_area(), PASSWORD)
    app.number_input(key=explorer.INDEX_KEY).set_value(10**7).run()

    assert not app.exception
    [error] = app.error
    assert error.value.startswith("Index 10000000 is out of range: the test split of easy-vqa "
                                  "has indices 0 to ")
    assert len(app.button) == 1  # only the log-out button; no Explain button


# The explorer test runs the real model on one datapoint with small engine settings. The
# app fits nothing, so the test writes the caches that `mviz prepare` would write, from
# real model outputs on the first POOL_DATAPOINTS validation datapoints (a full validation
# split and P fit would take minutes).
POOL_DATAPOINTS = 120
EXPLORER_INDEX = 5
SMALL_EXPLANATIONS = {"top_tokens": 1, "top_features": 2, "rg_examples": 1, "rg_pool": 100,
                      "lime_samples": 20, "seed": 0, "sparse_fit_to": "model"}


def write_pool_caches(context, n_datapoints: int) -> None:
    """Write the model outputs and the P fit that ``ModelContext`` reads from its cache.

    The file names are those of ``ModelContext.split_outputs`` and ``ModelContext.sparse_fit``.
    """
    from engine.stages import fit_prediction_stage
    from studies.context import POOL_SPLIT

    dataset = context.dataset(POOL_SPLIT)
    output = context.model.predict([dataset.datapoint(i) for i in range(n_datapoints)])
    predictions = output.logits.argmax(dim=1).numpy()
    labels = np.array([dataset.label(i) for i in range(n_datapoints)])
    features = output.features.numpy().astype(np.float32)
    context.cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(context.cache_dir / f"outputs_{POOL_SPLIT}.npz",
                        predictions=predictions, labels=labels, features=features)
    fit = fit_prediction_stage(features, predictions, labels, fit_to="model", n_alphas=6,
                               n_classes=len(context.model.label_names))
    fit.save(context.cache_dir / "sparse_model_model")


def test_explorer_explains_datapoint_once(simulated, monkeypatch):
    import engine.explain
    from engine.datasets.easyvqa import EasyVQA
    from studies import paths

    definition_path = simulated.studies_dir / f"{simulated.name}.yaml"
    document = yaml.safe_load(definition_path.read_text())
    document["explanations"] = SMALL_EXPLANATIONS
    definition_path.write_text(yaml.safe_dump(document, sort_keys=False))
    definition = load_study(definition_path)

    calls = []
    real_explain_item = engine.explain.explain_item

    def counted_explain_item(*args, **kwargs):
        calls.append(kwargs.get("config"))
        return real_explain_item(*args, **kwargs)

    monkeypatch.setattr(engine.explain, "explain_item", counted_explain_item)

    app = log_in(open_area(), PASSWORD)
    app.number_input(key=explorer.INDEX_KEY).set_value(EXPLORER_INDEX).run()
    app.button(key="explorer-explain").click().run(timeout=600)

    # Without the caches of `mviz prepare`, the explorer shows an error and fits nothing.
    assert not app.exception
    assert [error.value for error in app.error if "mviz prepare" in error.value]
    assert calls == []
    context = explorer._model_context(definition.model, definition.dataset, definition.weights,
                                      str(paths.data_dir()))
    assert not (context.cache_dir / "sparse_model_model").exists()

    write_pool_caches(context, POOL_DATAPOINTS)
    app.run(timeout=600)

    assert not app.exception
    assert len(calls) == 1
    assert calls[0].lime_samples == SMALL_EXPLANATIONS["lime_samples"]
    test_split = EasyVQA("test")
    output = context.model.predict([test_split.datapoint(EXPLORER_INDEX)])
    prediction = context.model.label_names[int(output.logits.argmax(dim=1)[0])]
    truth = test_split[EXPLORER_INDEX].answer
    markdown = [element.value for element in app.markdown]
    assert any(f"**Model's answer:** {prediction}  \n**Ground truth:** {truth}" in text
               for text in markdown)
    assert (f"#### P, multimodal prediction: the top features of class {prediction}"
            in markdown)

    fit = context.sparse_fit("model")
    top = fit.top_features(context.model.label_names.index(prediction), 2)
    [p_table] = [frame.value for frame in app.dataframe if "weight" in frame.value.columns]
    assert list(p_table["feature"]) == [f"Feature {j}" for j, _ in top]
    assert p_table["weight"].tolist() == pytest.approx([weight for _, weight in top])

    key = f"test-{EXPLORER_INDEX:05d}"
    explorer_bundle = paths.study_dir(simulated.name) / "explorer" / "bundles" / key
    assert (explorer_bundle / "COMPLETE").is_file()
    assert not (paths.bundles_dir(simulated.name) / key).exists()

    app.run(timeout=600)
    assert not app.exception
    assert len(calls) == 1
