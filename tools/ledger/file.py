"""The ledger file: its schema, its version stamp, and which paths may be (or become) a ledger.

Why apart from :class:`~asap.tools.ledger.store.Ledger`: everything here runs before a ledger is
opened (a session refuses a bad ``--db`` before it creates anything), and reads the file
without writing to it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from asap.tools.ledger.rows import LedgerError

SCHEMA = {
    "studies": ({"name": str, "space": str, "metric": str, "direction": str, "workload": str,
                 "created_at": float, "meta": str}, "name"),
    "trials": ({"id": int, "study": str, "number": int, "config": str, "tool": str, "status": str,
                "value": float, "metrics": str, "intermediate": str, "error": str, "fidelity": int,
                "started_at": float, "ended_at": float, "duration": float, "meta": str}, "id"),
    "timing": ({"id": int, "study": str, "kind": str, "start": float, "end": float,
                "duration": float, "trial_number": int, "prompt_tokens": int,
                "cached_tokens": int, "completion_tokens": int, "detail": str}, "id"),
    "events": ({"id": int, "study": str, "kind": str, "at": float, "detail": str}, "id"),
    # A running trial's intermediate values, one row per report (appended in O(1)); they move
    # into the trial's ``intermediate`` column when it finishes.
    "reports": ({"id": int, "study": str, "trial_id": int, "step": int, "value": float}, "id"),
}


APPLICATION_ID = 0x41534150  # "ASAP" in SQLite's application_id header field
SCHEMA_VERSION = 2  # PRAGMA user_version; bump with a step in MIGRATIONS
MIGRATIONS: dict[int, list[str]] = {
    # version -> the statements that bring a ledger of the version before it up to it.
    # 0 -> 1: ledgers written before the schema had a version: the same tables, now stamped.
    1: [],
    # 1 -> 2: the reports table (created with the others, from SCHEMA).
    2: [],
}


_CHECKPOINT_TABLES = {"checkpoints", "writes"}  # LangGraph's SqliteSaver: the chat's threads


def check_ledger_path(path: str | Path, *, write: bool = True) -> Path:
    """Refuse a path that cannot be, or is not, an asap ledger, without writing anything; with
    ``write``, also one this process cannot write (an immutable or read-only file or folder).

    Why before anything else: a session validates everything (this, the endpoint, the model)
    before it creates the ledger, so a refusal leaves no file behind and calls no LLM.
    """
    path = Path(path)
    if str(path) == ":memory:":
        return path
    if path.is_dir():
        raise LedgerError(f"{path} is a directory; --db names the ledger file (e.g. {path}/asap.db)")
    if path.exists() and not path.is_file():  # /dev/full, a FIFO: SQLite would write beside it
        raise LedgerError(f"{path} is not a regular file; --db names the ledger file")
    if not path.parent.exists():
        raise LedgerError(f"the directory {path.parent} for the ledger does not exist")
    if path.exists() and path.stat().st_size:
        identify(path)
        if write and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise LedgerError(f"the ledger {path} is read-only here (the file or its folder "
                              "cannot be written); copy it somewhere writable or pass another "
                              "--db")
    elif not os.access(path.parent, os.W_OK):
        raise LedgerError(f"cannot create the ledger {path}: the directory {path.parent} is "
                          "not writable")
    return path


def identify(path: Path) -> int:
    """The schema version of the asap ledger at ``path`` (0: written before versions); a file
    that is not one is refused, unchanged, with what it is instead.

    Read through SQLite only, never with a file descriptor of our own: closing any descriptor
    of a database file drops every POSIX lock this process holds on it, so a session's
    connection in this process would look gone to other processes, and the next one to close
    would delete the WAL under it (its later commits lost). SQLite's own connections share
    their locks within a process and do not do that.
    """
    tables: set[str] = set()
    cols: set[str] = set()
    uri = path.absolute().as_uri()
    # The WAL seen (read only); where that cannot open (a WAL without its shared-memory index
    # in a read-only folder), the database file as it is: its header's id and version.
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(uri + query, uri=True)
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
                cols = {r[1] for r in conn.execute("PRAGMA table_info(studies)")}
            finally:
                conn.close()
            break
        except sqlite3.OperationalError:
            if query.endswith("immutable=1"):
                raise LedgerError(f"{path} cannot be read (is it readable by this user?)") from None
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise LedgerError(f"{path} is not an asap ledger (not a SQLite database); "
                                  "pass another --db") from None
            raise LedgerError(f"{path} cannot be read as a SQLite database ({exc})") from None
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{path} was written by a newer asap (ledger schema {version}, this "
                              f"one reads up to {SCHEMA_VERSION}); upgrade asap-hpo")
        return version
    if app_id:
        raise LedgerError(f"{path} is another application's SQLite database "
                          f"(application id {app_id:#x}); pass another --db")
    # No id: a ledger from before versions (adopted, as is a chat file that holds LangGraph's
    # checkpoints and no study yet), or someone else's database.
    ours = set(SCHEMA["studies"][0]) <= cols and "trials" in tables
    if tables and not ours and not tables <= _CHECKPOINT_TABLES:
        raise LedgerError(f"{path} is another application's SQLite database (tables: "
                          f"{', '.join(sorted(tables))}); asap keeps its own ledger: pass "
                          "another --db")
    return 0
