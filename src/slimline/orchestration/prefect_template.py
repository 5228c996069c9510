"""A new project's Prefect database, started from a copy instead of migrated from nothing.

The temporary server migrates a new SQLite database on its first start (Prefect's alembic
history) and registers Prefect's block types in it: 17.6 s to healthy on a 2-core EPYC,
against 5.2 s for a database that has both. So the first new project on a machine keeps a
copy of its database as soon as its server answers, while only the migration and the block
registry are in it (`keep` refuses anything more), and every later new project starts from
that copy. One copy per Prefect version, in the user's cache (`$XDG_CACHE_HOME/slimline`,
else `~/.cache/slimline`); deleting it costs the next new project the migration, nothing else.
A database Prefect is told to keep elsewhere (its connection URL set) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from importlib.metadata import version
from pathlib import Path

from slimline.core.atomic import atomic_path

# what a migrated, block-registered database holds before any flow has run
PRISTINE = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})
CONNECTION_URLS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def template_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "slimline" / f"prefect-{version('prefect')}.db"


def start_from_template(home: Path) -> bool:
    """Give a new project's Prefect home the template's database. True when the home's
    database is new and there was no template to give: the server migrates it, and `keep`
    should take its copy once the server answers."""
    if any(os.environ.get(name) for name in CONNECTION_URLS):
        return False
    db = home / "prefect.db"
    if db.exists():
        return False
    template = template_path()
    if not template.exists():
        return True
    try:
        with atomic_path(db) as tmp:
            _backup(template, tmp)
    except (OSError, sqlite3.Error):  # an unreadable template: migrate, and keep a new one
        return True
    return False


def keep(home: Path) -> None:
    """Copy the home's database into the template when it holds nothing of a run (a
    consistent snapshot, safe beside the server writing). Best effort: a cache."""
    db = home / "prefect.db"
    if not db.exists():  # Prefect was told to keep it elsewhere
        return
    # racing projects each write a whole file
    with (
        contextlib.suppress(OSError, sqlite3.Error, RunRecorded),
        atomic_path(template_path()) as tmp,
    ):
        _backup(db, tmp)
        ran = _tables_with_rows(tmp) - PRISTINE
        if ran:
            raise RunRecorded(ran)


class RunRecorded(Exception):
    """The database holds rows of a run (these tables): not a template."""


def _backup(source: Path, dest: Path) -> None:
    """SQLite's online backup: a consistent copy even while a server writes the source. The
    copy leaves Prefect's WAL mode, so that reading it writes no -wal / -shm file beside it
    (Prefect turns WAL on again when it opens a project's copy)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(dest)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")


def _tables_with_rows(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t for t in tables if conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}
