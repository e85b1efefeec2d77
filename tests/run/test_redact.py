"""No password from a storage or tracking URL is ever recorded."""
from __future__ import annotations

import pytest

from benchmarks.run.redact import redact_url


@pytest.mark.parametrize("url, expected", [
    ("postgresql://alice:s3cr3t@db.lab:5432/optuna", "postgresql://alice:***@db.lab:5432/optuna"),
    ("mysql+pymysql://bob:p%40ss@host/db?charset=utf8", "mysql+pymysql://bob:***@host/db?charset=utf8"),
    ("postgresql://token@host/db", "postgresql://***@host/db"),
    ("https://host/api?token=abc&x=1", "https://host/api?token=***&x=1"),
    ("sqlite:////data/optuna.db", "sqlite:////data/optuna.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("outputs/tune/journal.log", "outputs/tune/journal.log"),
    (None, None),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    if url and "s3cr3t" in url:
        assert "s3cr3t" not in redact_url(url)
