"""Serving: recommendations for one customer, with reasons in their language.

A request folds the customer's newest interactions (and the products they are asking about) into
the trained item-side model, removes what they cannot or need not buy (out of stock, not in the
catalog, already bought or already looked at), and fills any remaining slots from what is popular
in the categories they care about. Everything is numpy on precomputed arrays: scoring one
customer takes well under a millisecond (see ``bench/recommend.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.recommend.catalog import Catalog
from services.recommend.model import Interaction, RecModel, history_weights

# What each reason code is called in each language. {anchor}: the customer's product that led
# to the suggestion; {category}: the suggested product's category.
REASON_TEMPLATES: dict[tuple[str, str], str] = {
    ("bought_together", "en"): "often bought together with {anchor}",
    ("bought_together", "zh"): "与{anchor}经常一起购买",
    ("similar", "en"): "similar to {anchor} you looked at",
    ("similar", "zh"): "和您看过的{anchor}相似",
    ("popular_in_category", "en"): "popular in {category}",
    ("popular_in_category", "zh"): "{category}类热销",
    ("popular", "en"): "popular right now",
    ("popular", "zh"): "当前热销",
}
REASON_CODES = ("bought_together", "similar", "popular_in_category")
# Kinds of an anchor product that make "bought together" true; a mere view makes it "similar".
BUY_KINDS = frozenset({"purchase", "cart"})


@dataclass(frozen=True, slots=True)
class Suggestion:
    product_id: str
    name: str
    score: float
    reason: str
    reason_code: str  # bought_together | similar | popular_in_category
    price_cents: int = 0  # 0: not in the catalog
    currency: str = ""


def reason_language(language: str) -> str:
    """zh for Chinese-speaking customers, English for everyone else (en, other)."""
    return "zh" if language == "zh" else "en"


class Recommender:
    """A trained model bound to a catalog snapshot. Build a new one when either changes."""

    def __init__(
        self,
        model: RecModel,
        catalog: Catalog | None = None,
        *,
        version: str = "",
        max_history: int = 50,
        exclude_interacted: bool = True,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.version = version or str(model.info.get("version", ""))
        self.max_history = max_history
        # Bought items are always removed; viewed/carted ones too unless this is False.
        self.exclude_interacted = exclude_interacted
        n = model.n_items
        self._available = np.ones(n, dtype=bool)
        self._category = [""] * n
        self._price = np.zeros(n, dtype=np.int64)  # cents; 0 (unknown) never exceeds a cap
        if catalog is not None:
            for i, pid in enumerate(model.item_ids):
                product = catalog.get(pid)
                self._available[i] = product is not None and product.stock > 0
                self._category[i] = product.category if product is not None else ""
                self._price[i] = product.price_cents if product is not None else 0
        self._category_array = np.array(self._category, dtype=object)
        pop = model.popularity.astype(np.float64)
        self._pop_norm = pop / pop.max() if n and pop.max() > 0 else np.zeros(n)
        # Fallback orders: available items with any popularity, most popular first.
        order = [i for i in np.argsort(-pop, kind="stable").tolist() if self._available[i]]
        order = [i for i in order if pop[i] > 0]
        self._global_order = order
        self._category_order: dict[str, list[int]] = {}
        for i in order:
            if self._category[i]:
                self._category_order.setdefault(self._category[i], []).append(i)

    # ---- the request path ----

    def recommend(
        self,
        history: Sequence[Interaction],
        *,
        n: int = 3,
        language: str = "en",
        context_product_ids: Sequence[str] = (),
        categories: Sequence[str] = (),
        max_price_cents: int | None = None,
        now: float | None = None,
    ) -> list[Suggestion]:
        """Up to ``n`` suggestions for a customer with this ``history`` (any order).

        ``context_product_ids`` are products the customer is asking about in this turn: they
        count as fresh views, and are never suggested back. ``categories``, when given, are the
        only ones suggested from ("有什么耳机推荐吗"): fewer than ``n`` rather than off-topic ones.
        ``max_price_cents`` leaves out what costs more ("一百块以内"; unknown prices stay in).
        """
        if n < 1:
            return []
        allowed = self._allowed(categories, max_price_cents)
        lang = reason_language(language)
        recent = sorted(history, key=lambda h: h.at)[-self.max_history :]
        if context_product_ids:
            at = now if now is not None else time.time()
            at = max([at, *(h.at for h in recent)])
            uid = recent[0].user_id if recent else ""
            recent += [Interaction(uid, pid, "view", at) for pid in context_product_ids]
        agg = history_weights(recent, self.model.config)
        if context_product_ids:
            # What the customer asks about right now counts as much as all their history.
            total = sum(w for pid, (w, _, _) in agg.items() if pid not in context_product_ids)
            for pid in context_product_ids:
                w, kind, at = agg[pid]
                agg[pid] = (max(w, total), kind, at)
        excluded = {
            pid
            for pid, (_, kind, _) in agg.items()
            if self.exclude_interacted or kind == "purchase"
        }
        excluded.update(context_product_ids)

        known = [(self.model.index_of(pid), pid) for pid in agg]
        hist = [(i, pid) for i, pid in known if i is not None]
        chosen: list[Suggestion] = []
        taken: set[int] = set()
        if hist:
            hist_idx = np.fromiter((i for i, _ in hist), dtype=np.int64, count=len(hist))
            hist_w = np.fromiter((agg[p][0] for _, p in hist), dtype=np.float64, count=len(hist))
            scores = self.model.score(hist_idx, hist_w)
            scores[~self._available] = -np.inf
            if allowed is not None:
                scores[~allowed] = -np.inf
            for pid in excluded:
                j = self.model.index_of(pid)
                if j is not None:
                    scores[j] = -np.inf
            cand = self._top(scores, n)
            if cand.size:
                contrib = self.model.contributions(hist_idx, hist_w, cand)
                anchors = contrib.argmax(axis=1)
                for j, a in zip(cand.tolist(), anchors.tolist(), strict=True):
                    anchor_pid = hist[a][1]
                    code = "bought_together" if agg[anchor_pid][1] in BUY_KINDS else "similar"
                    text = REASON_TEMPLATES[(code, lang)].format(
                        anchor=self._name(anchor_pid, lang)
                    )
                    anchor_j = self.model.index_of(anchor_pid)
                    if categories and (
                        anchor_j is None or self._category_array[anchor_j] not in categories
                    ):
                        # asked for snacks: "bought together with canvas shoes" reads as a
                        # mistake; the item stays, without a reason
                        text = ""
                    chosen.append(self._suggestion(j, float(scores[j]), text, code, lang))
                    taken.add(j)
        if len(chosen) < n:
            chosen += self._popular(
                n - len(chosen), lang, recent, excluded, taken, categories, allowed
            )
        return chosen

    def _allowed(self, categories: Sequence[str], max_price_cents: int | None) -> np.ndarray | None:
        """Items the request allows (None: all): in ``categories``, at most the price."""
        if not categories and max_price_cents is None:
            return None
        allowed = np.ones(self.model.n_items, dtype=bool)
        if categories:
            allowed &= np.isin(self._category_array, list(categories))
        if max_price_cents is not None:
            allowed &= self._price <= max_price_cents
        return allowed

    @staticmethod
    def _top(scores: np.ndarray, n: int) -> np.ndarray:
        """Indices of the best ``n`` positive scores, best first."""
        k = min(n, scores.size)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
        part = part[scores[part] > 0]
        return part[np.argsort(-scores[part], kind="stable")]

    def _popular(
        self,
        n: int,
        lang: str,
        recent: Sequence[Interaction],
        excluded: set[str],
        taken: set[int],
        only: Sequence[str] = (),
        allowed: np.ndarray | None = None,
    ) -> list[Suggestion]:
        """Best sellers: in the categories ``only`` when given, else first in the categories of
        the newest products the customer touched."""
        if only:
            orders = [self._category_order.get(c, []) for c in only]
        else:
            touched: list[str] = []
            for h in reversed(recent):
                product = self.catalog.get(h.product_id) if self.catalog is not None else None
                if product is not None and product.category and product.category not in touched:
                    touched.append(product.category)
            orders = [self._category_order.get(c, []) for c in touched] + [self._global_order]
        out: list[Suggestion] = []
        for order in orders:
            for j in order:
                if len(out) == n:
                    return out
                pid = self.model.item_ids[j]
                if j in taken or pid in excluded or (allowed is not None and not allowed[j]):
                    continue
                label = self._category_label(j, lang)
                # Without a category name (no catalog entry): "popular right now".
                template = REASON_TEMPLATES[("popular_in_category" if label else "popular", lang)]
                text = template.format(category=label)
                score = float(self._pop_norm[j])
                out.append(self._suggestion(j, score, text, "popular_in_category", lang))
                taken.add(j)
        return out

    def _suggestion(self, j: int, score: float, reason: str, code: str, lang: str) -> Suggestion:
        pid = self.model.item_ids[j]
        product = self.catalog.get(pid) if self.catalog is not None else None
        price, currency = (product.price_cents, product.currency) if product else (0, "")
        return Suggestion(
            pid, self._name(pid, lang), round(score, 6), reason, code, price, currency
        )

    def _name(self, pid: str, lang: str) -> str:
        product = self.catalog.get(pid) if self.catalog is not None else None
        return product.name(lang) if product is not None else pid

    def _category_label(self, j: int, lang: str) -> str:
        if self.catalog is None:
            return ""
        product = self.catalog.get(self.model.item_ids[j])
        return product.category_label(lang) if product is not None else ""
