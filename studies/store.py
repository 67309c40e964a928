"""The response store: SQLAlchemy models, the engine factory and the external-id hash.

Tables: ``studies``, ``conditions``, ``items``, ``participants``, ``presentations`` (the first
time a participant was shown an item) and ``responses`` (one row per participant and item,
enforced by a unique constraint). Timestamps are timezone-aware UTC in Python and stored as
naive UTC, because SQLite has no time zone type.

SQLite is the default backend (``<data>/mviz.sqlite3``). ``create_store`` turns on write-ahead
logging, foreign keys and a busy timeout. It also lets SQLAlchemy emit ``BEGIN`` itself, so
``write_transaction`` can open ``BEGIN IMMEDIATE`` transactions. Such a writer takes the
database lock before its first read, so two writers never act on the same stale snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from studies import paths
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

DATABASE_URL_VARIABLE = "MVIZ_DATABASE_URL"
ID_SALT_VARIABLE = "MVIZ_ID_SALT"
DATABASE_FILE_NAME = "mviz.sqlite3"
ID_SALT_FILE_NAME = "id_salt"
DEFAULT_BUSY_TIMEOUT_S = 30.0

# Execution option read by the SQLite "begin" listener: DEFERRED, IMMEDIATE or EXCLUSIVE.
SQLITE_BEGIN_OPTION = "mviz_sqlite_begin"
_SQLITE_BEGIN_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC (the column default of every timestamp)."""
    return datetime.now(UTC)


def new_token() -> str:
    """Return a random participant token that is safe to put in a URL."""
    return secrets.token_urlsafe(24)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned as timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r} cannot be stored; pass a timezone-aware time such "
                "as studies.store.utc_now()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class Study(Base):
    """One study, as synchronized from its definition."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(Text)
    participants_per_condition: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    conditions: Mapped[list[Condition]] = relationship(
        back_populates="study", order_by="Condition.position", cascade="all, delete-orphan")
    items: Mapped[list[Item]] = relationship(
        back_populates="study", order_by="Item.position", cascade="all, delete-orphan")


class Condition(Base):
    """A condition of a study (a set of stages shown), in the study's order."""

    __tablename__ = "conditions"
    __table_args__ = (UniqueConstraint("study_id", "name", name="uq_condition_study_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]

    study: Mapped[Study] = relationship(back_populates="conditions")


class Item(Base):
    """A study item: a datapoint (simulation and error studies) or a feature (concept studies)."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("study_id", "item_key", name="uq_item_study_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(100))
    practice: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int]

    study: Mapped[Study] = relationship(back_populates="items")


class Participant(Base):
    """A participant of one study, assigned to one condition.

    ``token`` is the only credential a participant holds. An external id (such as a
    Prolific id) is stored only as an HMAC-SHA256 hash (``external_id_hash``).
    ``item_order`` lists the participant's item keys: practice items first, in their
    fixed order, then the counted items in a random order of their own.
    """

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("study_id", "external_id_hash", name="uq_participant_external_id"),
        Index("ix_participant_study_condition", "study_id", "condition_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    condition_id: Mapped[int] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    external_id_hash: Mapped[str | None] = mapped_column(String(64))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    item_order: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    consented_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    completion_code: Mapped[str | None] = mapped_column(String(16))

    study: Mapped[Study] = relationship()
    condition: Mapped[Condition] = relationship()


class Presentation(Base):
    """The first time an item was shown to a participant."""

    __tablename__ = "presentations"

    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"),
                                         primary_key=True)
    shown_at: Mapped[datetime] = mapped_column(default=utc_now)


class Response(Base):
    """A participant's answer to one item; at most one per (participant, item)."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("participant_id", "item_id", name="uq_response_participant_item"),
        CheckConstraint("helpful_view IS NULL OR helpful_view IN ('overview', 'features')",
                        name="ck_response_helpful_view"),
        CheckConstraint("confidence IS NULL OR (confidence >= 1 AND confidence <= 5)",
                        name="ck_response_confidence"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    answer: Mapped[str] = mapped_column(Text)
    helpful_view: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[int | None]
    shown_at: Mapped[datetime]
    answered_at: Mapped[datetime] = mapped_column(default=utc_now)

    participant: Mapped[Participant] = relationship()
    item: Mapped[Item] = relationship()


def database_url() -> str:
    """Return ``MVIZ_DATABASE_URL`` when set, else the SQLite file in the data folder."""
    configured = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if configured:
        return configured
    return f"sqlite:///{(paths.data_dir() / DATABASE_FILE_NAME).resolve()}"


def mask_url(url: str | URL) -> str:
    """Return ``url`` with its password replaced by ``***``, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Not parseable as a URL: hide anything between "user:" and "@" all the same.
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def create_store(url: str | None = None, *,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlalchemy.Engine:
    """Create the engine of the response store and its tables (when missing).

    Parameters
    ----------
    url : str, optional
        An SQLAlchemy URL; ``database_url()`` when None. For an SQLite file, the parent
        folder is created.
    busy_timeout_s : float
        How long an SQLite connection waits for another writer's lock before it fails.

    Raises
    ------
    StudyInputError
        When the URL is invalid or the database cannot be opened; the message names the
        URL with its password masked.
    """
    text = url or database_url()
    try:
        parsed = make_url(text)
    except ArgumentError as error:
        raise StudyInputError(
            f"invalid database URL {mask_url(text)}: {error}; use an SQLAlchemy URL such as "
            "sqlite:///path/to/mviz.sqlite3") from None
    masked = mask_url(parsed)

    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        _create_sqlite_folder(parsed, masked)

    try:
        engine = sqlalchemy.create_engine(parsed)
    except (ArgumentError, ImportError) as error:
        raise StudyInputError(f"cannot open the response store {masked}: {error}") from None
    if is_sqlite:
        _configure_sqlite(engine, busy_timeout_s)

    try:
        # The coding tables of concept studies live in studies.coding on the same Base;
        # importing it here registers them whatever the caller imported first.
        import studies.coding  # noqa: F401

        Base.metadata.create_all(engine)
    except DBAPIError as error:
        engine.dispose()
        reason = error.orig if error.orig is not None else error
        raise StudyInputError(
            f"cannot open the response store {masked}: {reason}; check the URL, the file "
            f"permissions or the server, or set {DATABASE_URL_VARIABLE}") from None
    logger.info("response store ready at %s", masked)
    return engine


def _create_sqlite_folder(url: URL, masked: str) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StudyInputError(
            f"cannot open the response store {masked}: cannot create the folder "
            f"{Path(database).parent}: {error}") from None


def _configure_sqlite(engine: sqlalchemy.Engine, busy_timeout_s: float) -> None:
    busy_timeout_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # The sqlite3 module would otherwise start transactions itself, and only before
        # INSERT/UPDATE/DELETE; "_on_begin" emits BEGIN for every transaction instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"invalid {SQLITE_BEGIN_OPTION} {mode!r}; "
                             f"use one of {', '.join(_SQLITE_BEGIN_MODES)}")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run one unit of work that writes, and commit it.

    An open transaction of ``session`` is committed first, because the write transaction
    must be the first thing the connection does. On SQLite the transaction starts with
    ``BEGIN IMMEDIATE``, so concurrent writers queue on the database lock (up to the busy
    timeout) instead of reading stale data. Other backends start an ordinary transaction;
    callers there lock rows (``SELECT ... FOR UPDATE``) where order matters.
    An exception rolls the transaction back and propagates.
    """
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()


def hash_external_id(external_id: str) -> str:
    """Return the salted HMAC-SHA256 hash (hex) of an external id such as a Prolific id.

    Surrounding whitespace is ignored. The salt is ``MVIZ_ID_SALT`` when set, otherwise a
    random salt created once in ``<data>/id_salt``; with a new salt, returning participants
    are no longer recognized.

    Raises
    ------
    StudyInputError
        When ``external_id`` is empty.
    """
    normalized = external_id.strip()
    if not normalized:
        raise StudyInputError("the external id is empty; pass the participant's id or None")
    return hmac.new(_id_salt(), normalized.encode("utf-8"), hashlib.sha256).hexdigest()


def _id_salt() -> bytes:
    configured = os.environ.get(ID_SALT_VARIABLE, "")
    if configured:
        return configured.encode("utf-8")

    path = paths.data_dir() / ID_SALT_FILE_NAME
    if not path.is_file():
        _create_salt_file(path)
    salt = path.read_text().strip()
    if not salt:
        raise StudyInputError(
            f"the external-id salt file {path} is empty; delete it to create a new salt, or set "
            f"{ID_SALT_VARIABLE}")
    return salt.encode("utf-8")


def _create_salt_file(path: Path) -> None:
    # The salt is written to a private file first and then hard-linked into place: the
    # link fails when the salt exists, so two racing processes end up with the same salt
    # and no reader ever sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        os.link(staging, path)
        logger.info("created a new external-id salt in %s", path)
    except FileExistsError:
        pass
    finally:
        staging.unlink(missing_ok=True)


__all__ = [
    "Base",
    "Condition",
    "DATABASE_URL_VARIABLE",
    "ID_SALT_VARIABLE",
    "Item",
    "Participant",
    "Presentation",
    "Response",
    "SQLITE_BEGIN_OPTION",
    "Study",
    "UTCDateTime",
    "create_store",
    "database_url",
    "hash_external_id",
    "mask_url",
    "new_token",
    "utc_now",
    "write_transaction",
]
