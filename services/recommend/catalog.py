"""The product catalog as the recommender needs it: bilingual names, categories, stock, price."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from services.runtime.mongo import PRODUCT_ID_RE

DEFAULT_CURRENCY = "CNY"  # what `kefu seed` writes; a product without one is priced in it
CURRENCY_RE = re.compile(r"[A-Z]{3}")


class CatalogError(ValueError):
    """A product document the recommender cannot use; the message names it and the field."""


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name_zh: str
    name_en: str
    category: str
    category_zh: str
    category_en: str
    stock: int
    price_cents: int = 0
    currency: str = DEFAULT_CURRENCY

    def name(self, language: str) -> str:
        """The name in the customer's language, falling back to the other one, then the id."""
        first, second = (
            (self.name_zh, self.name_en)
            if language == "zh"
            else (
                self.name_en,
                self.name_zh,
            )
        )
        return first or second or self.product_id

    def category_label(self, language: str) -> str:
        first, second = (
            (self.category_zh, self.category_en)
            if language == "zh"
            else (
                self.category_en,
                self.category_zh,
            )
        )
        return first or second or self.category


def _text(doc: Mapping[str, Any], key: str, pid: str) -> str:
    value = doc.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CatalogError(f"product {pid}: {key} must be a string, got {type(value).__name__}")
    return value.strip()


def product_from_document(doc: Mapping[str, Any]) -> Product:
    """A `products` document → Product, or CatalogError saying which field is wrong."""
    pid = doc.get("_id")
    if not isinstance(pid, str) or not PRODUCT_ID_RE.match(pid):
        raise CatalogError(f"product _id {pid!r} does not match {PRODUCT_ID_RE.pattern}")
    stock = doc.get("stock")
    # bool is an int subclass; a stock of True is a data bug, not 1 item.
    if not isinstance(stock, int) or isinstance(stock, bool):
        raise CatalogError(f"product {pid}: stock must be an integer, got {stock!r}")
    price = doc.get("price_cents", 0)
    if not isinstance(price, int) or isinstance(price, bool):
        raise CatalogError(f"product {pid}: price_cents must be an integer, got {price!r}")
    currency = _text(doc, "currency", pid) or DEFAULT_CURRENCY
    if not CURRENCY_RE.fullmatch(currency):
        raise CatalogError(f"product {pid}: currency must be an ISO 4217 code, got {currency!r}")
    return Product(
        product_id=pid,
        name_zh=_text(doc, "name_zh", pid),
        name_en=_text(doc, "name_en", pid),
        category=_text(doc, "category", pid),
        category_zh=_text(doc, "category_zh", pid),
        category_en=_text(doc, "category_en", pid),
        stock=stock,
        price_cents=price,
        currency=currency,
    )


class Catalog:
    """Products by id. Immutable: a refreshed catalog is a new object (swapped atomically)."""

    def __init__(self, products: Iterable[Product]) -> None:
        self._products: dict[str, Product] = {p.product_id: p for p in products}

    @classmethod
    def from_documents(cls, docs: Iterable[Mapping[str, Any]]) -> Catalog:
        return cls(product_from_document(d) for d in docs)

    def __len__(self) -> int:
        return len(self._products)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._products

    def get(self, product_id: str) -> Product | None:
        return self._products.get(product_id)

    def products(self) -> list[Product]:
        return list(self._products.values())

    def categories_named(self, text: str) -> list[str]:
        """Categories whose name the message uses ("耳机", "phone cases", "tea"), in order of
        appearance. Each part of a category label counts: "充电器与数据线" is named by "数据线",
        "美妆护肤" by "护肤", "Tea & coffee" by "coffee"; English words match singular or plural."""
        lower = text.lower()
        words = [_singular(w) for w in _WORD.findall(lower)]
        found: list[tuple[int, str]] = []
        for category, (zh_parts, en_parts) in self._category_names.items():
            at = [lower.find(part) for part in zh_parts if part in lower]
            at += [len(text) + words.index(ws[0]) for ws in en_parts if all(w in words for w in ws)]
            if at:
                found.append((min(at), category))
        return [c for _, c in sorted(found)]

    @cached_property
    def _category_names(self) -> dict[str, tuple[list[str], list[list[str]]]]:
        """category → (Chinese label parts, English label parts as word lists)."""
        names: dict[str, tuple[list[str], list[list[str]]]] = {}
        for p in self._products.values():
            if not p.category or p.category in names:
                continue
            zh = [part for part in _ZH_SPLIT.split(p.category_zh) if part]
            # a four-character label is two words: "美妆护肤" is asked for as "护肤品"
            zh += [
                half
                for part in zh
                if len(part) == 4
                for half in (part[:2], part[2:])
                if half not in _ZH_GENERIC
            ]
            en = [
                [_singular(w) for w in _WORD.findall(part) if w not in _EN_ADJECTIVES]
                for part in _EN_SPLIT.split(p.category_en.lower())
            ]
            names[p.category] = (zh, [ws for ws in en if ws])
        return names


_WORD = re.compile(r"[a-z0-9']+")
_ZH_SPLIT = re.compile(r"[与和及、/&,，\s]+")
_EN_SPLIT = re.compile(r"\s*(?:&|,|/|\band\b)\s*")
_EN_ADJECTIVES = frozenset({"smart", "other", "assorted"})  # "a gadget" names "Smart gadgets"
_ZH_GENERIC = frozenset({"用品", "产品", "商品", "智能"})


def _singular(word: str) -> str:
    """ "cases" → "case", "men's" → "men": enough to match the words of a category label."""
    word = word.removesuffix("'s")
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
