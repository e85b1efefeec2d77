"""Credentials never leave the command line: URLs are recorded without their password.

An Optuna ``--storage`` or an MLflow tracking URI may carry a database password
(``postgresql://user:secret@host/db``). Anything recorded (a frozen tuned file meant to be committed, a run's
spec.json, MLflow tags, a report's index.md) goes through :func:`redact_url` first. Torch-free.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# Query parameters that carry secrets in database and object-store URLs.
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|key|credential|auth|sig(nature)?", re.IGNORECASE)


def redact_url(url: str | None) -> str | None:
    """``scheme://user:secret@host/db?password=x`` -> ``scheme://user:***@host/db?password=***``.

    Plain paths and URLs without credentials come back unchanged; None stays None.
    """
    if url is None or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparseable: record nothing of it rather than a secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # urlunsplit would normalise e.g. sqlite://// to sqlite:///
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
