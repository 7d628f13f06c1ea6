"""Declarative base shared by every storage module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, CursorResult, DateTime, MetaData, Result, String, TypeDecorator, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which keeps naive ones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


async def by_id(session: AsyncSession, model: type[T], key: int | None) -> T | None:
    """The row with this primary key, or None: also without a key (an unset reference, a
    button drawn without one), which needs no query."""
    return await session.get(model, key) if key is not None else None


async def reread(session: AsyncSession, row: T) -> T:
    """The row read again from the database, after a guarded UPDATE that went around the
    session (a transition, a decision), so the caller sees what the database now holds."""
    await session.refresh(row)
    return row


async def must_get(session: AsyncSession, model: type[T], key: object) -> T:
    """A row a foreign key points at: there by the database's constraints, so its absence is a
    bug, not a case to handle."""
    row = await session.get(model, key)
    if row is None:
        raise LookupError(f"{model.__name__} {key!r} is missing")
    return row


def upsert(session: AsyncSession, model: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL spell them alike)."""
    from sqlalchemy.dialects import postgresql, sqlite

    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(model)


def affected(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched (`execute()` is typed as returning a Result;
    for those statements it is a CursorResult, which counts them)."""
    return cast(CursorResult[Any], result).rowcount


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict: JSON, list: JSON}


ELLIPSIS = "…"


def clip(text: str | None, limit: int) -> str | None:
    """`text` made storable in a column of `limit` characters: NUL bytes removed (PostgreSQL
    refuses them) and, when longer, cut to `limit` with an ellipsis as the last character."""
    if text is None:
        return None
    text = text.replace("\x00", "")
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return text


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _bound_strings(mapper, connection, target) -> None:
    """The last guard before the database: whatever code path wrote a string, it fits its
    column and holds no NUL, so one long or odd value can never fail every later update (a
    129-character name used to lock its owner out on PostgreSQL)."""
    for attr in mapper.column_attrs:
        value = target.__dict__.get(attr.key)
        if not isinstance(value, str):
            continue
        column = attr.columns[0]
        length = getattr(column.type, "length", None) if isinstance(column.type, String) else None
        bounded = clip(value, length) if length else value.replace("\x00", "")
        if bounded != value:
            setattr(target, attr.key, bounded)
