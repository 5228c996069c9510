"""A new project's Prefect database, started from a copy instead of migrated from nothing.

The temporary server migrates a new SQLite database on its first start (Prefect's alembic
history) and registers Prefect's block types in it: 17.6 s to healthy on a 2-core EPYC,
against 6.7-7.2 s from a copy of a database that has both. So the first new project on a
machine keeps a copy of its database once its server answers, before the flow's first run
(`keep` takes only a database with Prefect's schema version and no row of a run), and every
later new project starts from that copy. One copy per Prefect version, in the user's cache
(`$XDG_CACHE_HOME/slimline`, else `~/.cache/slimline`); a copy that is not such a database
is deleted and made anew, and deleting it costs the next new project the migration, nothing
else. A database URL set in the environment for Prefect's server is left alone.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from slimline.core.atomic import atomic_path

# the tables a migrated, block-registered database fills before any flow has run
PRISTINE = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})
CONNECTION_URLS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def template_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "slimline" / f"prefect-{version('prefect')}.db"


def start_from_template(home: Path) -> bool:
    """Give a new project's Prefect home the template's database. True when the home's
    database is new and there was no usable template to give: the server migrates it, and
    `keep` should take its copy once the server answers."""
    if any(os.environ.get(name) for name in CONNECTION_URLS):
        return False
    db = home / "prefect.db"
    try:
        if db.exists():
            return False
        template = template_path()
        if not template.exists():
            return True
        try:
            _copy_template(template, db)
        except (sqlite3.Error, NotATemplate):  # its fault: the next `keep` makes a new one
            template.unlink(missing_ok=True)
            return True
    except OSError:  # an unreadable cache or home: the server migrates, as without one
        return True
    return False


def keep(home: Path) -> None:
    """Store the home's database as the template, unless another project stored one first
    (one writer at a time, under a file lock) or it is not a migrated database without a run.
    Best effort: a cache."""
    db, template = home / "prefect.db", template_path()
    if not db.exists():  # Prefect was told to keep it elsewhere
        return
    with contextlib.suppress(OSError, sqlite3.Error, NotATemplate):  # filelock.Timeout too
        template.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(template.with_name(f"{template.name}.lock"), timeout=0):
            if template.exists():
                return
            _copy_template(db, template)


class NotATemplate(Exception):
    """A database without Prefect's schema version, or with rows of a run."""


def _copy_template(source: Path, dest: Path) -> None:
    """`source` copied to `dest` whole, or nothing there if it is not a template (raises)."""
    with atomic_path(dest) as tmp:
        _backup(source, tmp)
        _check_template(tmp)


def _check_template(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        filled = {t for t in tables if conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}
    if "alembic_version" not in filled or filled - PRISTINE:
        raise NotATemplate(sorted(filled))


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
