"""Waiting for a condition in tests, bounded in time (instead of sleeping a fixed while)."""
from __future__ import annotations

import time


def eventually(limit: float, condition, interval: float = 0.01) -> bool:
    """Whether `condition()` became true within `limit` seconds (checked every `interval`)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
