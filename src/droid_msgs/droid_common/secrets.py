"""API keys from the environment, and redaction so they never reach logs or diagnostics."""

from __future__ import annotations

import os

_KNOWN: set = set()


def env_secret(name: str) -> str | None:
    """Read a secret from the environment (empty means unset) and remember it for redact()."""
    value = os.environ.get(name, '').strip()
    if not value:
        return None
    _KNOWN.add(value)
    return value


def redact(text: object, *extra: str) -> str:
    """``str(text)`` with every known secret (and ``extra`` ones) replaced by ``***``."""
    out = str(text)
    for secret in sorted(_KNOWN | {e for e in extra if e}, key=len, reverse=True):
        if len(secret) >= 4:
            out = out.replace(secret, '***')
    return out
