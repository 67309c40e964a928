"""Tests of the response store: engine settings, constraints, timestamps and id hashing."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import stat
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from studies.errors import StudyInputError
from studies.store import (
    Condition,
    Item,
    Participant,
    Response,
    Study,
    create_store,
    database_url,
    hash_external_id,
    mask_url,
    write_transaction,
)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("MVIZ_DATA_DIR", str(folder))
    monkeypatch.delenv("MVIZ_DATABASE_URL", raising=False)
    monkeypatch.delenv("MVIZ_ID_SALT", raising=False)
    return folder


@pytest.fixture
def engine(data_dir):
    engine = create_store()
    yield engine
    engine.dispose()


def add_participant(session: Session) -> Participant:
    """Insert a study with one condition, two items and one participant."""
    study = Study(name="s", type="simulation", title="t")
    condition = Condition(study=study, name="U", position=0)
    items = [Item(study=study, item_key=f"test-{i:05d}", practice=False, position=i)
             for i in range(2)]
    participant = Participant(study=study, condition=condition,
                              item_order=[item.item_key for item in items])
    session.add_all([study, condition, *items, participant])
    session.commit()
    return participant


def test_database_url_default_in_data_dir(data_dir):
    assert database_url() == f"sqlite:///{(data_dir / 'mviz.sqlite3').resolve()}"


def test_database_url_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("MVIZ_DATABASE_URL", "sqlite:////tmp/elsewhere.sqlite3")

    assert database_url() == "sqlite:////tmp/elsewhere.sqlite3"


def test_create_store_creates_file_and_tables(data_dir, engine):
    assert (data_dir / "mviz.sqlite3").is_file()
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    assert tables == {"studies", "conditions", "items", "participants", "presentations",
                      "responses", "codings", "coded_responses"}


def test_create_store_sqlite_pragmas(engine):
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_create_store_is_repeatable(engine):
    with Session(engine) as session:
        add_participant(session)
    second = create_store(str(engine.url))
    with Session(second) as session:
        assert session.scalar(select(sqlalchemy.func.count()).select_from(Participant)) == 1
    second.dispose()


def test_write_transaction_locks_before_writing(engine, data_dir):
    path = data_dir / "mviz.sqlite3"
    with Session(engine) as session:
        with write_transaction(session):
            # Nothing written yet, but BEGIN IMMEDIATE already holds the write lock.
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()


def test_write_transaction_rolls_back_on_error(engine):
    with Session(engine) as session:
        with pytest.raises(RuntimeError), write_transaction(session):
            session.add(Study(name="s", type="simulation", title="t"))
            session.flush()
            raise RuntimeError("failure inside the unit of work")
        assert session.scalar(select(Study)) is None


def test_timestamps_round_trip_as_utc(engine):
    with Session(engine) as session:
        participant = add_participant(session)
        plus_two = timezone(timedelta(hours=2))
        participant.consented_at = datetime(2024, 5, 1, 14, 30, tzinfo=plus_two)
        session.commit()
        session.expire_all()

        stored = session.get(Participant, participant.id)
        assert stored.consented_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
        assert stored.consented_at.tzinfo is UTC
        assert stored.created_at.tzinfo is UTC
        assert abs(datetime.now(UTC) - stored.created_at) < timedelta(minutes=5)


def test_naive_timestamp_rejected(engine):
    with Session(engine) as session:
        participant = add_participant(session)
        participant.consented_at = datetime(2024, 5, 1, 12, 30)
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_participant_defaults(engine):
    with Session(engine) as session:
        first = add_participant(session)
        second = Participant(study_id=first.study_id, condition_id=first.condition_id,
                             item_order=[])
        session.add(second)
        session.commit()

        assert first.simulated is False
        assert len(first.token) >= 32
        assert first.token != second.token


def test_response_unique_per_participant_item(engine):
    with Session(engine) as session:
        participant = add_participant(session)
        item = session.scalar(select(Item))
        now = datetime.now(UTC)
        session.add(Response(participant=participant, item=item, answer="red", shown_at=now))
        session.commit()
        session.add(Response(participant=participant, item=item, answer="blue", shown_at=now))
        with pytest.raises(IntegrityError, match="UNIQUE"):
            session.commit()


def test_foreign_keys_enforced(engine):
    with Session(engine) as session:
        add_participant(session)
        session.add(Response(participant_id=999, item_id=999, answer="red",
                             shown_at=datetime.now(UTC)))
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            session.commit()


@pytest.mark.parametrize(("field", "value"), [("confidence", 6), ("confidence", 0),
                                              ("helpful_view", "both")])
def test_response_check_constraints(engine, field, value):
    with Session(engine) as session:
        participant = add_participant(session)
        item = session.scalar(select(Item))
        response = Response(participant=participant, item=item, answer="red",
                            shown_at=datetime.now(UTC))
        setattr(response, field, value)
        session.add(response)
        with pytest.raises(IntegrityError, match="CHECK"):
            session.commit()


def test_create_store_unreachable_server_masks_password(data_dir):
    url = "postgresql://researcher:s3cret@localhost:1/mviz"
    with pytest.raises(StudyInputError) as error:
        create_store(url)

    message = str(error.value)
    assert "postgresql://researcher:***@localhost:1/mviz" in message
    assert "s3cret" not in message


def test_create_store_invalid_sqlite_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/store.sqlite3"
    with pytest.raises(StudyInputError) as error:
        create_store(url)

    assert url in str(error.value)
    assert "cannot open the response store" in str(error.value)


def test_create_store_unparseable_url():
    with pytest.raises(StudyInputError, match="invalid database URL not a url"):
        create_store("not a url")


def test_mask_url_hides_password():
    assert mask_url("mysql://user:pw@host/db") == "mysql://user:***@host/db"
    assert mask_url("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"


def test_hash_external_id_known_value(data_dir, monkeypatch):
    monkeypatch.setenv("MVIZ_ID_SALT", "pepper")
    expected = hmac.new(b"pepper", b"5f1c0ffee", hashlib.sha256).hexdigest()

    assert hash_external_id("5f1c0ffee") == expected
    assert hash_external_id("  5f1c0ffee\n") == expected


def test_hash_external_id_depends_on_salt(data_dir, monkeypatch):
    monkeypatch.setenv("MVIZ_ID_SALT", "one")
    first = hash_external_id("participant")
    monkeypatch.setenv("MVIZ_ID_SALT", "two")

    assert hash_external_id("participant") != first


def test_hash_external_id_salt_file_created_once(data_dir):
    first = hash_external_id("participant")
    salt_file = data_dir / "id_salt"
    salt = salt_file.read_text()

    assert hash_external_id("participant") == first
    assert salt_file.read_text() == salt
    assert len(salt) == 64
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    assert first == hmac.new(salt.encode(), b"participant", hashlib.sha256).hexdigest()
    assert list(data_dir.glob(".id_salt*")) == []


def test_hash_external_id_empty_rejected(data_dir):
    with pytest.raises(StudyInputError, match="external id is empty"):
        hash_external_id("   ")
