"""Customers' recent interactions held in memory by the recommend stage.

On FerretDB a query by user_id scans the collection (only exact _id filters use an index), which
cost 0.5-1.5 s a turn in the demo: far over the stage's 5 ms budget. So the stage loads every
customer's newest interactions with one scan when it (re)loads the catalog, and appends each
behaviour event it consumes, so a customer's newest action changes their recommendations at once.
Behaviour is keyed by user_id and turns by conversation_id: with several replicas, an event
consumed by another replica reaches this one at the next reload (REFRESH_S in app.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from services.recommend.model import Interaction
from services.recommend.store import HISTORY_LIMIT, interaction_from_document


class HistoryCache:
    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self._by_user: dict[str, list[Interaction]] = {}

    def replace_all(self, docs: Iterable[Mapping[str, Any]]) -> int:
        by_user: dict[str, list[Interaction]] = defaultdict(list)
        count = 0
        for doc in docs:
            it = interaction_from_document(doc)
            if isinstance(it, str):
                continue
            by_user[it.user_id].append(it)
            count += 1
        for items in by_user.values():
            items.sort(key=lambda i: i.at, reverse=True)
            del items[self.limit :]
        self._by_user = dict(by_user)
        return count

    def add(self, doc: Mapping[str, Any]) -> None:
        it = interaction_from_document(doc)
        if isinstance(it, str):
            return
        items = self._by_user.setdefault(it.user_id, [])
        items.insert(0, it)
        del items[self.limit :]

    def recent(self, user_id: str) -> list[Interaction]:
        return list(self._by_user.get(user_id, ()))
