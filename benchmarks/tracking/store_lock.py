"""One writer at a time per MLflow store.

Several syncs at once (two launchers, a launcher and a hand-run sync) raced on SQLite's schema migration
(leaving "table _alembic_tmp_experiments already exists" behind) and on search-then-create (duplicate runs).
Every sync therefore holds an exclusive ``flock`` for its whole duration:

* SQLite store ``sqlite:///PATH``: ``PATH.lock`` beside the database, so every process writing that store,
  from any output directory, queues on the same lock, including the client creation that migrates the schema.
* Any other store (an ``mlflow server``, a database server): ``.mlflow-sync.lock`` in the output directory
  being synced, which serialises the syncs of that output; idempotence (one MLflow run per run id, found by
  tag, duplicates repaired) covers writers of different outputs.

The kernel releases a lock when its holder dies, so a killed sync never blocks the next one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator

WAIT_NOTICE_S = 2.0


def lock_path(tracking_uri: str, output: Path) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).with_suffix(".db.lock")
    return Path(output) / ".mlflow-sync.lock"


@contextlib.contextmanager
def store_lock(tracking_uri: str, output: Path, log: Callable[[str], None] = print,
               timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold the store's sync lock; waits for another sync (saying so once), up to ``timeout_s``."""
    path = lock_path(tracking_uri, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > timeout_s:
                    raise TimeoutError(f"another MLflow sync has held {path} for {waited:.0f} s") from None
                if waited > WAIT_NOTICE_S and not told:
                    log(f"waiting for another MLflow sync of this store to finish ({path})")
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
