"""Swap to a newly published model version without restarting the service.

A service keeps one ``ModelWatcher`` per model kind and calls ``poll()`` between batches (or
simply reads ``current()``, which polls). At most every ``interval_s`` seconds the watcher reads
``<root>/<kind>/CURRENT``; when it names a new version, the loader builds the new model
completely and only then is the reference replaced, so a batch is always processed by one
whole model, never a half-loaded one. Replacing the reference is a single assignment: batches
already running keep the object they started with.

A version that fails to load is logged and retried at the next check; the service goes on with
the model it has, because a bad publish must not take the stage down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from services.models import registry

T = TypeVar("T")
log = logging.getLogger(__name__)


class ModelWatcher(Generic[T]):
    def __init__(
        self,
        root: Path,
        kind: str,
        loader: Callable[[Path], T],
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_swap: Callable[[str, T], None] | None = None,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.root = Path(root)
        self.kind = kind
        self._loader = loader
        self._interval = interval_s
        self._clock = clock
        self._on_swap = on_swap
        self._model: T | None = None
        self._version: str | None = None
        self._next_check = float("-inf")
        self.last_error: str | None = None  # why the newest version could not be loaded
        self.swaps = 0

    @property
    def version(self) -> str | None:
        return self._version

    def load(self) -> T:
        """Load the published version now (start-up); raises if there is none or it is broken."""
        version = registry.current_version(self.root, self.kind)
        if version is None:
            raise registry.ModelNotFoundError(
                f"no {self.kind} model under {self.root}: run `kefu models build`"
            )
        self._swap_to(version, self._loader(self.root / self.kind / version))
        self._next_check = self._clock() + self._interval
        assert self._model is not None
        return self._model

    def poll(self) -> bool:
        """Check CURRENT if the interval has passed; True when a new version was swapped in."""
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self._interval
        version = registry.current_version(self.root, self.kind)
        if version is None or version == self._version:
            return False
        try:
            model = self._loader(self.root / self.kind / version)  # fully built before the swap
        except Exception as exc:
            self.last_error = f"{self.kind} {version}: {type(exc).__name__}: {exc}"
            log.error(
                "cannot load %s version %s; keeping %s",
                self.kind,
                version,
                self._version,
                exc_info=True,
            )
            return False
        self._swap_to(version, model)
        return True

    def current(self) -> T:
        """The model to use for the next batch (polls first; loads on first use)."""
        if self._model is None:
            return self.load()
        self.poll()
        return self._model

    def _swap_to(self, version: str, model: T) -> None:
        previous = self._version
        self._model = model
        self._version = version
        self.last_error = None
        if previous is not None:
            self.swaps += 1
            log.info("swapped %s model %s -> %s", self.kind, previous, version)
        if self._on_swap is not None:
            self._on_swap(version, model)
