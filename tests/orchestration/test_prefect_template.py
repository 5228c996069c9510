"""A new project's Prefect database starts as a copy of a migrated one: only ever a copy of a
migrated database that holds nothing of a run, written by one project, only for the default
SQLite home, never over a project's own database."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from filelock import FileLock

from slimline.orchestration.prefect_template import keep, start_from_template, template_path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def database(home: Path, rows: dict[str, list[str]]) -> Path:
    """A Prefect-like database: one text column per table, the given rows."""
    home.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(home / "prefect.db")) as db, db:
        db.execute("PRAGMA journal_mode=WAL")  # as Prefect keeps it
        for table, values in rows.items():
            db.execute(f'CREATE TABLE "{table}" (v TEXT)')
            db.executemany(f'INSERT INTO "{table}" VALUES (?)', [(v,) for v in values])
    return home / "prefect.db"


def cache_files() -> list[str]:
    """The cache folder's files but the writers' lock: no temp file, no -wal / -shm."""
    return sorted(p.name for p in template_path().parent.iterdir() if p.suffix != ".lock")


def rows(db: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [v for (v,) in conn.execute(f'SELECT v FROM "{table}"')]


MIGRATED = {"alembic_version": ["head-rev"], "block_type": ["json", "secret"], "flow": []}


def test_a_migrated_database_becomes_the_template_new_projects_start_from(tmp_path, cache):
    assert start_from_template(tmp_path / "first")  # nothing to copy: the server migrates
    assert not (tmp_path / "first" / "prefect.db").exists()
    database(tmp_path / "first", MIGRATED)
    keep(tmp_path / "first")
    template = template_path()
    assert template.parent == cache / "slimline" and template.name.startswith("prefect-3.")
    assert cache_files() == [template.name]
    assert template.read_bytes()[18:20] == b"\x01\x01"  # rollback journal: reads write nothing

    second = tmp_path / "second"
    second.mkdir()
    assert not start_from_template(second)  # copied: nothing for its server to keep
    assert rows(second / "prefect.db", "alembic_version") == ["head-rev"]
    assert rows(second / "prefect.db", "block_type") == ["json", "secret"]
    assert sorted(p.name for p in second.iterdir()) == ["prefect.db"]
    assert cache_files() == [template.name]


def test_a_database_with_anything_of_a_run_is_never_kept(tmp_path):
    database(tmp_path / "ran", {**MIGRATED, "flow": ["slimline-pipeline"]})
    keep(tmp_path / "ran")
    assert not template_path().exists()
    assert cache_files() == []  # its temp copy is gone too
    database(tmp_path / "unmigrated", {"block_type": ["json"]})  # no schema version
    keep(tmp_path / "unmigrated")
    assert not template_path().exists()


def test_the_first_project_to_store_the_template_is_the_only_writer(tmp_path):
    database(tmp_path / "a", MIGRATED)
    database(tmp_path / "b", {**MIGRATED, "block_type": ["json", "secret", "webhook"]})
    with FileLock(template_path().with_name(f"{template_path().name}.lock")):
        keep(tmp_path / "a")  # another project is storing it: this one leaves it be
    assert not template_path().exists()
    keep(tmp_path / "a")
    keep(tmp_path / "b")  # stored already: never rewritten under a reader
    assert rows(template_path(), "block_type") == ["json", "secret"]


def test_a_project_keeps_its_own_database(tmp_path):
    database(tmp_path / "template-maker", MIGRATED)
    keep(tmp_path / "template-maker")
    own = database(tmp_path / "project", {**MIGRATED, "flow": ["slimline-pipeline"]})
    assert not start_from_template(tmp_path / "project")
    assert rows(own, "flow") == ["slimline-pipeline"]


def test_a_database_kept_elsewhere_is_left_alone(tmp_path, monkeypatch):
    database(tmp_path / "template-maker", MIGRATED)
    keep(tmp_path / "template-maker")
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")
    (tmp_path / "project").mkdir()
    assert not start_from_template(tmp_path / "project")
    assert not (tmp_path / "project" / "prefect.db").exists()
    keep(tmp_path / "project")  # no database in the home: nothing to keep, no error


@pytest.mark.parametrize("content", [b"half a download", b""], ids=["garbage", "empty"])
def test_a_template_that_is_not_a_migrated_database_is_replaced(tmp_path, content):
    template_path().parent.mkdir(parents=True)
    template_path().write_bytes(content)
    (tmp_path / "project").mkdir()
    assert start_from_template(tmp_path / "project")  # the server migrates, as with none
    assert list((tmp_path / "project").iterdir()) == []
    assert not template_path().exists()
    database(tmp_path / "project", MIGRATED)
    keep(tmp_path / "project")
    assert rows(template_path(), "alembic_version") == ["head-rev"]
