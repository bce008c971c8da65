"""The recommender on a synthetic shop with a structure it must find: two customer clusters.

Shoe customers interact with shoes (P100xx), phone customers with phone gear (P200xx). Every
algorithm must keep each cluster in its own aisle, change its mind as soon as a customer's
newest behaviour changes, and never suggest what is sold out or already bought.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from services.recommend.catalog import Catalog, CatalogError, Product, product_from_document
from services.recommend.model import (
    ALGORITHMS,
    Interaction,
    ModelError,
    RecModel,
    TrainConfig,
    history_weights,
    train,
)
from services.recommend.recommender import Recommender

SHOES = [f"P100{i:02d}" for i in range(12)]
PHONES = [f"P200{i:02d}" for i in range(12)]
T0 = 1_760_000_000.0
DAY = 86_400.0


def two_clusters(seed: int = 3) -> list[Interaction]:
    rng = random.Random(seed)
    rows = []
    for cluster, items in (("s", SHOES), ("p", PHONES)):
        for u in range(100):
            picked = rng.sample(items, 6)
            for j, pid in enumerate(picked):
                kind = rng.choice(["view", "view", "cart", "purchase"])
                rows.append(Interaction(f"{cluster}{u}", pid, kind, T0 + j * DAY + u))
    # Phone gear sells more overall, so popularity alone favours it for everyone.
    for u in range(15):
        rows.append(Interaction(f"x{u}", PHONES[0], "purchase", T0 + u))
    return rows


def catalog(out_of_stock: tuple[str, ...] = ()) -> Catalog:
    products = [
        Product(
            pid,
            f"鞋{pid}",
            f"shoe {pid}",
            "shoes",
            "鞋靴",
            "Shoes",
            0 if pid in out_of_stock else 5,
        )
        for pid in SHOES
    ] + [
        Product(
            pid,
            f"手机配件{pid}",
            f"phone gear {pid}",
            "phones",
            "手机配件",
            "Phone gear",
            0 if pid in out_of_stock else 5,
        )
        for pid in PHONES
    ]
    return Catalog(products)


@pytest.fixture(scope="module")
def interactions() -> list[Interaction]:
    return two_clusters()


# Strong regularisation keeps ALS from fitting noise on a couple of hundred customers (with the
# library's default-like 0.01-0.1, the popular product leaks into the other cluster's aisle).
CONFIGS = {
    "item_cosine": TrainConfig(algorithm="item_cosine", half_life_days=0),
    "item_bm25": TrainConfig(algorithm="item_bm25", half_life_days=0),
    "als": TrainConfig(
        algorithm="als", factors=8, regularization=10.0, alpha=10.0, half_life_days=0
    ),
}


def test_every_algorithm_is_tested() -> None:
    assert set(CONFIGS) == set(ALGORITHMS)


@pytest.fixture(scope="module", params=ALGORITHMS)
def model(request: pytest.FixtureRequest, interactions: list[Interaction]) -> RecModel:
    return train(interactions, CONFIGS[request.param])


def _history(
    user: str, items: list[str], kind: str = "view", start: float = T0
) -> list[Interaction]:
    return [Interaction(user, pid, kind, start + i * 60) for i, pid in enumerate(items)]


def test_each_cluster_gets_its_own_aisle(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    for history_items, aisle in ((SHOES[:3], SHOES), (PHONES[:3], PHONES)):
        out = rec.recommend(_history("new", history_items), n=5)
        assert len(out) == 5
        assert all(s.product_id in aisle for s in out), (model.config.algorithm, out)
        assert not {s.product_id for s in out} & set(history_items)
        assert [s.score for s in out] == sorted((s.score for s in out), reverse=True)


def test_fold_in_follows_the_newest_behaviour_without_retraining(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    history = _history("u", SHOES[:2])
    assert all(s.product_id in SHOES for s in rec.recommend(history, n=3))
    # The same customer now buys phone gear several times: the next request reflects it.
    history += _history("u", PHONES[:4], kind="purchase", start=T0 + DAY)
    after = rec.recommend(history, n=3)
    assert all(s.product_id in PHONES for s in after), (model.config.algorithm, after)
    assert {s.reason_code for s in after} == {"bought_together"}


def test_sold_out_and_bought_items_are_never_suggested(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    history = _history("u", SHOES[:3], kind="purchase")
    first = rec.recommend(history, n=3)[0].product_id
    sold_out = Recommender(model, catalog(out_of_stock=(first,)))
    out = sold_out.recommend(history, n=8)
    assert first not in {s.product_id for s in out}
    assert not {s.product_id for s in out} & set(SHOES[:3])
    # Products missing from the catalog cannot be sold either.
    partial = Catalog([p for p in catalog().products() if p.product_id != first])
    assert first not in {s.product_id for s in Recommender(model, partial).recommend(history)}


def test_viewed_items_may_come_back_when_asked(model: RecModel) -> None:
    rec = Recommender(model, catalog(), exclude_interacted=False)
    history = _history("u", SHOES[:2], kind="view") + _history("u", [SHOES[2]], "purchase")
    out = {s.product_id for s in rec.recommend(history, n=11)}
    assert SHOES[2] not in out  # bought: never
    assert set(SHOES[:2]) <= out


def test_reasons_are_in_the_customers_language(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    viewed = rec.recommend(_history("u", [SHOES[0]], "view"), n=1, language="zh")[0]
    assert viewed.reason_code == "similar"
    assert viewed.reason == f"和您看过的鞋{SHOES[0]}相似"
    assert viewed.name == catalog().get(viewed.product_id).name("zh")  # type: ignore[union-attr]
    assert viewed.name != viewed.product_id
    bought = rec.recommend(_history("u", [SHOES[0]], "purchase"), n=1, language="en")[0]
    assert bought.reason_code == "bought_together"
    assert bought.reason == f"often bought together with shoe {SHOES[0]}"
    assert bought.name == catalog().get(bought.product_id).name("en")  # type: ignore[union-attr]
    other = rec.recommend(_history("u", [SHOES[0]], "view"), n=1, language="other")[0]
    assert other.reason.startswith("similar to shoe ")


def test_new_customer_gets_best_sellers_of_the_category_in_question(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    cold = rec.recommend([], n=3, language="en")
    assert cold[0].product_id == PHONES[0]  # the overall best seller
    assert all(s.reason_code == "popular_in_category" for s in cold)
    assert cold[0].reason == "popular in Phone gear"
    # An unknown product in the question: best sellers of its category, in Chinese.
    new_shoe = Catalog(
        [*catalog().products(), Product("P10099", "新鞋", "new shoe", "shoes", "鞋靴", "Shoes", 3)]
    )
    rec = Recommender(model, new_shoe)
    asked = rec.recommend([], n=3, language="zh", context_product_ids=["P10099"], now=T0)
    assert all(s.product_id in SHOES for s in asked)
    assert asked[0].reason == "鞋靴类热销"


def test_context_products_steer_and_are_not_suggested_back(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    history = _history("u", PHONES[:3])

    def best_shoe_rank(context: list[str]) -> int:
        ranked = rec.recommend(history, n=30, context_product_ids=context, now=T0 + DAY)
        ids = [s.product_id for s in ranked]
        assert not set(context) & set(ids)
        return min(ids.index(pid) for pid in ids if pid in SHOES)

    # Asking about a shoe brings shoes up even though the history is all phone gear.
    assert best_shoe_rank([SHOES[5]]) < best_shoe_rank([])


def test_few_candidates_are_topped_up_from_popularity() -> None:
    rows = [
        Interaction("a", SHOES[0], "purchase", T0),
        Interaction("a", SHOES[1], "purchase", T0 + 1),
        Interaction("b", PHONES[0], "purchase", T0),
        Interaction("c", PHONES[0], "purchase", T0),
    ]
    model = train(rows, TrainConfig(algorithm="item_cosine"))
    out = Recommender(model, catalog()).recommend(_history("u", [SHOES[0]]), n=3)
    assert [s.product_id for s in out] == [SHOES[1], PHONES[0]]
    assert [s.reason_code for s in out] == ["similar", "popular_in_category"]


def test_kind_weights_prefer_purchases_over_views(interactions: list[Interaction]) -> None:
    model = train(interactions, TrainConfig(algorithm="item_cosine", half_life_days=0))
    rec = Recommender(model, catalog())
    # One glance at shoes and one purchase of phone gear, at the same moment.
    history = [Interaction("u", SHOES[0], "view", T0), Interaction("u", PHONES[1], "purchase", T0)]
    assert rec.recommend(history, n=1)[0].product_id in PHONES
    swapped = [Interaction("u", SHOES[0], "purchase", T0), Interaction("u", PHONES[1], "view", T0)]
    assert rec.recommend(swapped, n=1)[0].product_id in SHOES


def test_time_decay_favours_recent_interest(interactions: list[Interaction]) -> None:
    # Three old shoe purchases, then one phone purchase 60 days later.
    history = [
        *_history("u", SHOES[:3], "purchase"),
        Interaction("u", PHONES[1], "purchase", T0 + 60 * DAY),
    ]
    flat = Recommender(train(interactions, TrainConfig(half_life_days=0)), catalog())
    decayed = Recommender(train(interactions, TrainConfig(half_life_days=7)), catalog())
    assert flat.recommend(history, n=1)[0].product_id in SHOES
    assert decayed.recommend(history, n=1)[0].product_id in PHONES
    weights = history_weights(history, TrainConfig(half_life_days=7))
    assert weights[PHONES[1]][0] == pytest.approx(6.0)
    assert weights[SHOES[0]][0] == pytest.approx(6.0 * 2 ** (-60 / 7), rel=1e-3)


def test_save_and_load_round_trip(model: RecModel, tmp_path: Path) -> None:
    model.save(tmp_path)
    loaded = RecModel.load(tmp_path)
    assert loaded.item_ids == model.item_ids
    assert loaded.config.describe() == model.config.describe()
    history = _history("u", SHOES[:2]) + _history("u", [PHONES[3]], "cart", T0 + DAY)
    a = Recommender(model, catalog()).recommend(history, n=5, language="zh")
    b = Recommender(loaded, catalog()).recommend(history, n=5, language="zh")
    assert [(s.product_id, s.reason) for s in a] == [(s.product_id, s.reason) for s in b]
    assert np.allclose([s.score for s in a], [s.score for s in b], rtol=1e-5)


def test_loading_something_else_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="kefu train recommend"):
        RecModel.load(tmp_path)


def test_training_rejects_bad_input() -> None:
    with pytest.raises(ModelError, match="no interactions"):
        train([], TrainConfig())
    with pytest.raises(ModelError, match="unknown algorithm"):
        train(two_clusters(), TrainConfig(algorithm="svd"))
    with pytest.raises(ModelError, match="kind_weights"):
        TrainConfig(kind_weights={"view": 1.0}).validate()


def test_catalog_documents_are_validated() -> None:
    doc = {
        "_id": "P10001",
        "name_zh": "跑鞋",
        "name_en": "Running shoe",
        "category": "shoes",
        "category_zh": "鞋靴",
        "category_en": "Shoes",
        "price_cents": 39900,
        "stock": 3,
    }
    product = product_from_document(doc)
    assert product.name("zh") == "跑鞋" and product.name("en") == "Running shoe"
    assert product_from_document({**doc, "name_zh": ""}).name("zh") == "Running shoe"
    assert product.currency == "CNY"  # what a product without one is priced in
    assert product_from_document({**doc, "currency": "EUR"}).currency == "EUR"
    for bad in (
        {**doc, "currency": "yuan"},
        {"_id": "X1"},
        {**doc, "stock": "3"},
        {**doc, "stock": True},
        {**doc, "name_en": 5},
    ):
        with pytest.raises(CatalogError):
            product_from_document(bad)


def test_asked_categories_are_the_only_ones_suggested(model: RecModel) -> None:
    rec = Recommender(model, catalog())
    # A phone customer asking "有什么鞋推荐吗" gets shoes only, from the model and from popularity.
    history = _history("u", PHONES[:4])
    asked = rec.recommend(history, n=20, categories=["shoes"], now=T0 + DAY)
    assert asked and all(s.product_id in SHOES for s in asked)
    assert rec.recommend([], n=3, categories=["shoes"])[0].product_id in SHOES
    # A category nobody sells: nothing, rather than something off-topic.
    assert rec.recommend(history, n=3, categories=["furniture"]) == []


def test_a_reason_from_another_category_is_left_out_when_a_category_is_asked_for() -> None:
    # everyone who bought the phone case also bought the first two pairs of shoes
    rows = [
        Interaction(f"u{u}", pid, "purchase", T0 + i)
        for u in range(8)
        for i, pid in enumerate([PHONES[0], SHOES[0], SHOES[1]])
    ]
    rec = Recommender(train(rows, TrainConfig(algorithm="item_cosine")), catalog())
    history = _history("new", [PHONES[0]], kind="purchase")
    asked = rec.recommend(history, n=2, categories=["shoes"], now=T0 + DAY)
    assert {s.product_id for s in asked} == {SHOES[0], SHOES[1]}
    # "bought together with <a phone case>" for shoes read as a mistake: no reason instead
    assert all(s.reason_code == "bought_together" and s.reason == "" for s in asked)
    unasked = rec.recommend(history, n=2, now=T0 + DAY)
    assert all(s.reason for s in unasked)  # without a category asked, the anchor is the reason


def test_a_message_names_categories_by_any_part_of_their_label() -> None:
    def product(pid: str, category: str, zh: str, en: str) -> Product:
        return Product(pid, pid, pid, category, zh, en, 1)

    shop = Catalog(
        [
            product("P1", "phone-cases", "手机壳", "Phone cases"),
            product("P2", "chargers", "充电器与数据线", "Chargers & cables"),
            product("P3", "beauty", "美妆护肤", "Beauty & skincare"),
            product("P4", "mens", "男装", "Men's clothing"),
            product("P5", "womens", "女装", "Women's clothing"),
            product("P6", "gadgets", "智能数码", "Smart gadgets"),
            product("P7", "tea-coffee", "茶与咖啡", "Tea & coffee"),
        ]
    )
    assert shop.categories_named("can you recommend a good phone case?") == ["phone-cases"]
    assert shop.categories_named("推荐一根数据线") == ["chargers"]
    assert shop.categories_named("护肤品推荐") == ["beauty"]
    assert shop.categories_named("women's clothing ideas") == ["womens"]
    assert shop.categories_named("any gadget for my dad") == ["gadgets"]
    assert shop.categories_named("先看看咖啡，再看看手机壳") == ["tea-coffee", "phone-cases"]
    assert shop.categories_named("recommend something nice") == []
    assert shop.categories_named("a phone for my mum") == []  # "phone" alone is no phone case


def test_a_price_cap_leaves_out_what_costs_more(model: RecModel) -> None:
    cheap = {pid for pid in SHOES[:6]}
    shop = Catalog(
        [
            Product(p.product_id, p.name_zh, p.name_en, p.category, p.category_zh, p.category_en,
                    p.stock, 5000 if p.product_id in cheap else 20000)
            for p in catalog().products()
        ]
    )  # fmt: skip
    rec = Recommender(model, shop)
    history = _history("u", SHOES[6:9])
    capped = rec.recommend(history, n=20, categories=["shoes"], max_price_cents=10000, now=T0 + DAY)
    assert capped and {s.product_id for s in capped} <= cheap
    assert {(s.price_cents, s.currency) for s in capped} == {(5000, "CNY")}  # shown to the shopper
    assert rec.recommend([], n=3, max_price_cents=100) == []  # nothing that cheap
