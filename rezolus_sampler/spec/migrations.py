"""Answers migrations: answers recorded by an older template version, brought
to the form a newer version reads.

A release that changes the answers schema (a renamed key, a new shape of a
value) registers one function here under its version, and copier.yml gets the
matching `_migrations` entry (stage `before`, `version: "<version>"`), which
Copier runs during `copier update` from any older version, in version order,
before it renders the new version:

    @migration("0.3.0")
    def _counters_by_to_amount(answers: dict) -> dict:
        ...  # return the answers in the 0.3.0 form

A migration takes and returns the answers dict (Copier's own `_commit` and
`_src_path` keys included: leave them) and must be idempotent: an update that
fails after the migration leaves the migrated answers file, and the next
update runs the migration on it again. `tests/test_migrations.py` checks that
every migration here has its copier.yml entry and an old-form answers file
under `tests/migrations/<version>/` that it turns into answers the model
accepts.
"""

from __future__ import annotations

from collections.abc import Callable

Migration = Callable[[dict], dict]

MIGRATIONS: dict[str, Migration] = {}


class MigrationError(Exception):
    """No migration for a version, or answers it cannot read."""


def migration(version: str) -> Callable[[Migration], Migration]:
    """Register `function` as the migration to template version `version`."""

    def register(function: Migration) -> Migration:
        if version in MIGRATIONS:
            raise MigrationError(f"two migrations for version {version}")
        MIGRATIONS[version] = function
        return function

    return register


def migrate(answers: dict, version: str) -> dict:
    """The answers in the form of `version`."""
    if version not in MIGRATIONS:
        raise MigrationError(
            f"copier.yml runs a migration to {version}, but rezolus_sampler/spec/migrations.py "
            "has none for that version"
        )
    if not isinstance(answers, dict):
        raise MigrationError("the answers file does not hold a mapping")
    migrated = MIGRATIONS[version](dict(answers))
    if not isinstance(migrated, dict):
        raise MigrationError(f"the migration to {version} did not return answers")
    return migrated


# Migrations, oldest first. None yet: 0.2.0 reads the answers 0.1.0 wrote.
