"""Conversation ids: short, unique, sortable enough to read in logs."""

import uuid


def new_conversation_id() -> str:
    """Return a fresh conversation id (12 hex characters of a uuid4)."""
    return uuid.uuid4().hex[:12]
