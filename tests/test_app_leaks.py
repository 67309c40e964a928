"""The participant pages reveal no answer key and reject links that try to steer them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from app_fixtures import APP_SCRIPT, FixtureStudy, build_study
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from app import texts
from studies.store import Participant, Response, Study

TIMEOUT_S = 30

# Paths of answer keys opened by this process while recording is on. An audit hook
# cannot be removed, so one hook is installed once and switched by the flag.
_answer_key_opens: list[str] = []
_recording = {"on": False}


def _audit_open(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _recording["on"] and str(args[0]).endswith("answer_key.json"):
        _answer_key_opens.append(str(args[0]))


sys.addaudithook(_audit_open)


@pytest.fixture
def answer_key_reads() -> Iterator[list[str]]:
    """Record every opening of an answer key file during the test."""
    _answer_key_opens.clear()
    _recording["on"] = True
    yield _answer_key_opens
    _recording["on"] = False


def open_app(study: FixtureStudy | None = None, **params: str) -> AppTest:
    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    if study is not None:
        app.query_params["study"] = study.name
    app.query_params.update(params)
    return app.run()


def walk(block: Any) -> Iterator[Any]:
    """Yield every block and element below ``block`` of an AppTest tree."""
    yield block
    for child in getattr(block, "children", {}).values():
        yield from walk(child)


def page_text(app: AppTest, skip_key: str) -> str:
    """Return the text of every element sent to the browser, but the widget ``skip_key``."""
    parts = []
    for root in (app.main, app.sidebar):
        for node in walk(root):
            if getattr(node, "key", None) == skip_key:
                continue
            proto = getattr(node, "proto", None)
            if proto is not None:
                parts.append(str(proto))
    return "\n".join(parts)


def answer_strings(study: FixtureStudy, item_keys: list[str]) -> set[str]:
    strings = set()
    for key in item_keys:
        strings.add(str(study.answer_key[key]["prediction"]))
        strings.add(str(study.answer_key[key]["ground_truth"]))
    return strings


def count_rows(study: FixtureStudy, model: type) -> int:
    with Session(study.engine()) as session:
        return session.scalar(select(func.count()).select_from(model))


def start(app: AppTest) -> None:
    app.checkbox(key="consent-checkbox").check()
    app.button(key="consent-continue").click().run()
    app.button(key="instructions-continue").click().run()


def submit(app: AppTest, item_key: str, helpful: str = "Overview") -> None:
    radio = app.radio(key=f"answer-{item_key}")
    radio.set_value(radio.options[0])
    helpful_radios = [r for r in app.radio if r.key == f"helpful-{item_key}"]
    if helpful_radios:
        helpful_radios[0].set_value(helpful)
    [button for button in app.button if button.label == texts.SUBMIT_BUTTON][0].click().run()


def current_item(app: AppTest) -> str:
    keys = [radio.key for radio in app.radio if radio.key and radio.key.startswith("answer-")]
    assert len(keys) == 1
    return keys[0].removeprefix("answer-")


def test_item_pages_reveal_no_answer(monkeypatch, tmp_path, answer_key_reads):
    study = build_study(monkeypatch, tmp_path, ["MultiViz"], n_practice=1, n_counted=3)
    app = open_app(study)
    start(app)

    practice_key = current_item(app)
    assert answer_key_reads == []
    practice_text = page_text(app, skip_key=f"answer-{practice_key}")
    assert str(study.answer_key[practice_key]["prediction"]) not in practice_text
    submit(app, practice_key)
    # The feedback page is the one place that reads the answer key; seeing that read
    # shows that the hook would catch any other.
    assert len(answer_key_reads) == 1
    app.button(key=f"feedback-continue-{practice_key}").click().run()
    answer_key_reads.clear()

    counted_strings = answer_strings(study, study.counted_keys)
    for _ in study.counted_keys:
        item_key = current_item(app)
        text = page_text(app, skip_key=f"answer-{item_key}")
        for secret in counted_strings:
            assert secret not in text, f"{secret!r} is on the page of item {item_key}"
        state = repr(app.session_state.to_dict())
        for secret in counted_strings:
            assert secret not in state, f"{secret!r} is in the session state"
        assert not any(secret in str(value) for value in app.query_params.values()
                       for secret in counted_strings)

        options = app.radio(key=f"answer-{item_key}").options
        assert options == sorted(study.bundle_choices[item_key])
        assert options != study.bundle_choices[item_key]
        submit(app, item_key)

    assert answer_key_reads == []
    assert app.title[0].value == texts.COMPLETION_TITLE


def test_choice_order_ignores_answer_key(monkeypatch, tmp_path):
    options = []
    for shift in (0, 1, 2, 3):
        study = build_study(monkeypatch, tmp_path / f"shift{shift}", ["U"], n_practice=1,
                            prediction_shift=shift)
        app = open_app(study)
        start(app)
        options.append(app.radio(key=f"answer-{study.practice_keys[0]}").options)
        assert study.bundle_choices[study.practice_keys[0]][0] == \
            study.answer_key[study.practice_keys[0]]["prediction"]

    assert all(order == options[0] for order in options)
    assert options[0] == sorted(options[0])


def test_condition_parameter_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U", "MultiViz"])
    app = open_app(study, condition="MultiViz")

    assert app.error[0].value == texts.CONDITION_REJECTED
    assert "participant" not in app.query_params
    assert not study.database_path.exists()


def test_unknown_study_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    app.query_params["study"] = "no-such-study"
    app.run()

    assert app.error[0].value == texts.UNKNOWN_STUDY
    assert "no-such-study" not in page_text(app, skip_key="")
    assert not study.database_path.exists()


def test_missing_study_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    app = open_app(None)

    assert app.error[0].value == texts.MISSING_STUDY
    assert not study.database_path.exists()


def test_unprepared_study_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    document = yaml.safe_load((study.studies_dir / f"{study.name}.yaml").read_text())
    document.update(name="concept-study", type="concept", conditions=["R_l"])
    del document["choices"]
    (study.studies_dir / "concept-study.yaml").write_text(yaml.safe_dump(document))

    app = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT_S)
    app.query_params["study"] = "concept-study"
    app.run()
    assert app.error[0].value == texts.STUDY_NOT_READY
    assert not study.database_path.exists()


def test_forged_token_rejected(monkeypatch, tmp_path):
    study = build_study(monkeypatch, tmp_path, ["U"])
    app = open_app(study, participant="forged-token-0123456789")

    assert app.error[0].value == texts.INVALID_PARTICIPANT
    assert app.query_params["participant"] == "forged-token-0123456789"
    assert count_rows(study, Participant) == 0
    assert count_rows(study, Response) == 0


def test_token_of_other_study_rejected(monkeypatch, tmp_path):
    first = build_study(monkeypatch, tmp_path, ["U"], name="first-study")
    token = open_app(first).query_params["participant"]
    second = build_study(monkeypatch, tmp_path, ["U"], name="second-study")

    app = open_app(second, participant=token)
    assert app.error[0].value == texts.INVALID_PARTICIPANT
    assert count_rows(second, Participant) == 1
    with Session(second.engine()) as session:
        owners = session.scalars(
            select(Study.name).join(Participant, Participant.study_id == Study.id))
        assert list(owners) == ["first-study"]
