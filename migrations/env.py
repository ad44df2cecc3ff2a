"""Alembic environment: runs on the engine deskctl hands over in the config."""

from __future__ import annotations

from alembic import context

from deskctl.store.models import Base, managed_by_models

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=managed_by_models,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
