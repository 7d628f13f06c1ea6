"""The migrations build exactly the schema the models describe, as one linear history."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import create_engine
from storage.migrate import alembic_config, upgrade_async
from storage.models import Base


def test_history_is_linear():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()
    assert len(script.get_bases()) == 1, script.get_bases()


async def test_migrated_schema_matches_models(db_url):
    await upgrade_async(db_url)
    engine = create_engine(db_url)

    def diff(connection):
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
