"""Retrying a dependency (MongoDB, gRPC) that a stage cannot do without.

A stage that cannot record its work must not acknowledge the message, so it waits for the
dependency to return instead of dropping or failing the message; readiness reports the outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


async def retry_until_ok(
    op: Callable[[], Awaitable[T]],
    what: str,
    on_state: Callable[[bool, str], None] | None = None,
    first_delay: float = 0.2,
    max_delay: float = 5.0,
) -> T:
    delay = first_delay
    failing = False
    while True:
        try:
            result = await op()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.error("%s failed, retrying until it works: %s", what, exc)
            failing = True
            if on_state:
                on_state(False, f"{what} failing: {type(exc).__name__}: {str(exc)[:200]}")
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
            continue
        if failing:
            log.info("%s works again", what)
        if on_state:
            on_state(True, "ok")
        return result
