"""Retry/backoff policy for LLM requests (plain Python).

Transient faults (HTTP 5xx, 408, 409, 429, timeouts, lost connections, a malformed stream)
are retried at most ``max_retries`` times with exponential backoff::

    delay(attempt) = min(max_delay, base_delay * multiplier ** (attempt - 1))   # attempt = 1, 2, ...

A 429's ``Retry-After`` (seconds) replaces the computed delay, capped at ``max_delay``.
Anything else (400, 401, 403, 404, ...) is not retried. No jitter: one droid, one client,
and deterministic tests.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 409, 429})


class LLMError(Exception):
    """A failed LLM request. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, kind: str = ''):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.kind = kind or (f'http {status}' if status else 'error')


def status_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS


@dataclass
class RetryPolicy:
    max_retries: int = 2
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(self.max_delay, float(retry_after))
        return min(self.max_delay, self.base_delay * self.multiplier ** max(0, attempt - 1))

    def should_retry(self, error: LLMError, attempt: int) -> bool:
        """``attempt`` = retries already made."""
        return error.retryable and attempt < self.max_retries
