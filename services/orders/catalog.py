"""The demo product catalog (bilingual names, categories, prices) and ``load_catalog``.

Brands are invented (悦声 Yuesheng, 声渡 Shengdu...); device names in phone-case titles only say
what the case fits. Prices are in CNY cents. Stock is set by the seed (some items sold out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from services.orders.repository import PRODUCTS

# slug → (Chinese name, English name)
CATEGORIES: dict[str, tuple[str, str]] = {
    "phone-cases": ("手机壳", "Phone cases"),
    "earphones": ("耳机", "Earphones"),
    "chargers": ("充电器与数据线", "Chargers & cables"),
    "power-banks": ("充电宝", "Power banks"),
    "gadgets": ("智能数码", "Smart gadgets"),
    "mens-clothing": ("男装", "Men's clothing"),
    "womens-clothing": ("女装", "Women's clothing"),
    "shoes": ("鞋靴", "Shoes"),
    "kitchen": ("厨房用品", "Kitchen"),
    "home": ("家居", "Home"),
    "books": ("图书", "Books"),
    "beauty": ("美妆护肤", "Beauty & skincare"),
    "toys": ("玩具", "Toys"),
    "snacks": ("零食", "Snacks & food"),
    "tea-coffee": ("茶与咖啡", "Tea & coffee"),
    "sports": ("运动户外", "Sports & outdoors"),
}

# Variant groups: (Chinese suffix, English suffix, tag).
VARIANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "case-colours": (
        ("黑色", "black", "black"),
        ("透明", "clear", "clear"),
        ("远峰蓝", "sierra blue", "blue"),
    ),
    "bw": (("黑色", "black", "black"), ("白色", "white", "white")),
    "sizes-mf": (
        ("M码", "size M", "size-m"),
        ("L码", "size L", "size-l"),
        ("XL码", "size XL", "size-xl"),
    ),
    "sizes-wf": (
        ("S码", "size S", "size-s"),
        ("M码", "size M", "size-m"),
        ("L码", "size L", "size-l"),
    ),
    "shoe-sizes": (
        ("39码", "EU 39", "eu-39"),
        ("41码", "EU 41", "eu-41"),
        ("43码", "EU 43", "eu-43"),
    ),
    "shades": (
        ("正红色", "classic red", "red"),
        ("豆沙色", "rosewood", "rosewood"),
        ("枫叶红", "maple red", "maple"),
    ),
    "bedding": (
        ("米白", "ivory", "ivory"),
        ("雾霾蓝", "haze blue", "blue"),
        ("浅灰", "light grey", "grey"),
    ),
    "single": (("", "", ""),),
}


@dataclass(frozen=True)
class ProductLine:
    category: str
    name_zh: str
    name_en: str
    price_yuan: float
    variants: str = "single"


def _lines(category: str, variants: str, rows: list[tuple[str, str, float]]) -> list[ProductLine]:
    return [ProductLine(category, zh, en, price, variants) for zh, en, price in rows]


PRODUCT_LINES: list[ProductLine] = [
    *_lines(
        "phone-cases",
        "case-colours",
        [
            ("iPhone 15 四角防摔手机壳", "Shockproof bumper case for iPhone 15", 39),
            ("iPhone 15 Pro 磁吸硅胶手机壳", "Magnetic silicone case for iPhone 15 Pro", 69),
            ("华为 Mate 60 Pro 素皮手机壳", "Vegan leather case for Huawei Mate 60 Pro", 59),
            ("小米 14 磨砂防指纹手机壳", "Matte anti-fingerprint case for Xiaomi 14", 29),
            ("OPPO Find X7 碳纤维纹手机壳", "Carbon-fibre texture case for OPPO Find X7", 45),
            ("vivo X100 卡通图案手机壳", "Cartoon print case for vivo X100", 35),
            ("三星 Galaxy S24 支架手机壳", "Kickstand case for Samsung Galaxy S24", 49),
            ("荣耀 Magic6 液态硅胶手机壳", "Liquid silicone case for Honor Magic6", 39),
        ],
    ),
    *_lines(
        "earphones",
        "bw",
        [
            ("悦声 Air Pro 主动降噪真无线耳机", "Yuesheng Air Pro ANC true wireless earbuds", 399),
            (
                "悦声 Buds Lite 半入耳蓝牙耳机",
                "Yuesheng Buds Lite semi-in-ear Bluetooth earbuds",
                149,
            ),
            ("声渡 H7 头戴式降噪耳机", "Shengdu H7 over-ear noise-cancelling headphones", 699),
            ("声渡 运动挂耳式蓝牙耳机", "Shengdu sport ear-hook Bluetooth earphones", 199),
            ("Type-C 有线入耳式耳机", "Wired USB-C in-ear earphones", 49),
            ("骨传导开放式运动耳机", "Open-ear bone-conduction sports headphones", 499),
            ("儿童护耳头戴式耳机", "Kids' volume-limited headphones", 129),
            ("7.1 环绕声游戏耳机", "Gaming headset with 7.1 surround sound", 259),
        ],
    ),
    *_lines(
        "chargers",
        "bw",
        [
            ("65W 氮化镓三口快充充电器", "65 W GaN 3-port fast charger", 129),
            ("20W PD 快充充电头", "20 W USB-C PD charger", 49),
            ("100W 氮化镓桌面充电站", "100 W GaN desktop charging station", 259),
            ("15W 磁吸无线充电器", "15 W magnetic wireless charger", 99),
            ("三合一无线充电底座", "3-in-1 wireless charging stand", 199),
            ("USB-C 编织快充数据线 1 米", "Braided USB-C fast-charging cable, 1 m", 29),
            ("USB-C 转 Lightning 数据线 2 米", "USB-C to Lightning cable, 2 m", 39),
            ("车载双口快充充电器", "Dual-port fast car charger", 59),
        ],
    ),
    *_lines(
        "power-banks",
        "bw",
        [
            ("10000mAh 超薄磁吸充电宝", "10,000 mAh slim magnetic power bank", 149),
            ("20000mAh 22.5W 快充充电宝", "20,000 mAh 22.5 W fast-charging power bank", 129),
            ("30000mAh 大容量户外充电宝", "30,000 mAh high-capacity outdoor power bank", 229),
            ("5000mAh 迷你口袋充电宝", "5,000 mAh mini pocket power bank", 69),
            ("100W PD 笔记本充电宝", "100 W PD laptop power bank", 399),
            ("300W 户外便携储能电源", "300 W portable power station", 1299),
        ],
    ),
    *_lines(
        "gadgets",
        "bw",
        [
            ("智能手表 GT 心率血氧监测", "Smart watch GT with heart-rate and SpO2 tracking", 899),
            ("儿童定位电话手表", "Kids' GPS phone watch", 499),
            ("智能运动手环 8", "Fitness band 8", 239),
            ("防水蓝牙小音箱", "Waterproof Bluetooth mini speaker", 169),
            ("智能体脂秤", "Smart body-fat scale", 99),
            ("7 英寸电子阅读器", "7-inch e-reader", 899),
        ],
    ),
    *_lines(
        "gadgets",
        "single",
        [
            ("静音无线鼠标", "Silent wireless mouse", 69),
            ("87 键青轴机械键盘", "Mechanical keyboard, blue switches, 87 keys", 299),
        ],
    ),
    *_lines(
        "mens-clothing",
        "sizes-mf",
        [
            ("男士纯棉圆领短袖T恤", "Men's cotton crew-neck T-shirt", 79),
            ("男士修身牛仔裤", "Men's slim-fit jeans", 199),
            ("男士轻薄羽绒服", "Men's lightweight down jacket", 499),
            ("男士商务长袖衬衫", "Men's long-sleeve business shirt", 159),
            ("男士连帽卫衣", "Men's hooded sweatshirt", 169),
            ("男士休闲束脚运动裤", "Men's casual joggers", 129),
            ("男士羊毛针织衫", "Men's wool knit sweater", 299),
        ],
    ),
    *_lines(
        "womens-clothing",
        "sizes-wf",
        [
            ("女士法式碎花连衣裙", "Women's French floral dress", 259),
            ("女士高腰阔腿裤", "Women's high-waist wide-leg trousers", 179),
            ("女士羊绒混纺开衫", "Women's cashmere-blend cardigan", 399),
            ("女士宽松纯棉T恤", "Women's relaxed cotton T-shirt", 69),
            ("女士中长款风衣", "Women's mid-length trench coat", 599),
            ("女士真丝衬衫", "Women's silk blouse", 329),
            ("女士瑜伽打底裤", "Women's yoga leggings", 119),
        ],
    ),
    *_lines(
        "shoes",
        "shoe-sizes",
        [
            ("男士轻量缓震跑步鞋", "Men's lightweight cushioned running shoes", 399),
            ("女士透气帆布板鞋", "Women's breathable canvas sneakers", 199),
            ("男士真皮商务皮鞋", "Men's leather business shoes", 459),
            ("女士短筒切尔西靴", "Women's Chelsea ankle boots", 429),
            ("户外防水徒步鞋", "Waterproof hiking shoes", 529),
        ],
    ),
    *_lines(
        "shoes",
        "single",
        [
            ("儿童魔术贴运动鞋", "Kids' hook-and-loop sports shoes", 159),
            ("家居防滑拖鞋", "Non-slip home slippers", 39),
        ],
    ),
    *_lines(
        "kitchen",
        "single",
        [
            ("不粘炒锅 32cm", "Non-stick wok, 32 cm", 189),
            ("304 不锈钢保温杯 500ml", "304 stainless steel vacuum flask, 500 ml", 89),
            ("多功能电饭煲 4L", "Multi-function rice cooker, 4 L", 299),
            ("可视窗空气炸锅 5.5L", "Air fryer with viewing window, 5.5 L", 369),
            ("不锈钢刀具七件套", "Stainless steel knife set, 7 pieces", 259),
            ("竹制砧板两件套", "Bamboo chopping boards, set of 2", 69),
            ("手冲咖啡壶套装", "Pour-over coffee kit", 159),
            ("玻璃保鲜盒十件套", "Glass food storage containers, set of 10", 119),
            ("电热水壶 1.7L", "Electric kettle, 1.7 L", 129),
            ("破壁料理机", "High-speed blender", 499),
            ("陶瓷餐具 16 件套", "Ceramic dinnerware set, 16 pieces", 229),
            ("硅胶厨具五件套", "Silicone kitchen utensils, set of 5", 79),
        ],
    ),
    *_lines(
        "home",
        "bedding",
        [
            ("纯棉床上四件套 1.8m 床", "Cotton bedding set, 4 pieces, for 1.8 m beds", 299),
        ],
    ),
    *_lines(
        "home",
        "single",
        [
            ("记忆棉护颈枕", "Memory foam neck-support pillow", 129),
            ("遮光窗帘两片装", "Blackout curtains, 2 panels", 159),
            ("香薰蜡烛礼盒", "Scented candle gift box", 99),
            ("北欧风落地灯", "Nordic-style floor lamp", 259),
            ("可折叠收纳箱三个装", "Foldable storage boxes, pack of 3", 79),
            ("超细纤维速干浴巾", "Quick-dry microfibre bath towel", 49),
            ("智能感应小夜灯两个装", "Motion-sensor night lights, pack of 2", 59),
            ("静音桌面加湿器", "Quiet desktop humidifier", 129),
        ],
    ),
    *_lines(
        "books",
        "single",
        [
            (
                "《红楼梦》精装典藏版",
                "Dream of the Red Chamber (hardcover collector's edition)",
                128,
            ),
            ("《西游记》青少年版", "Journey to the West (young readers' edition)", 45),
            ("《三国演义》全二册", "Romance of the Three Kingdoms (2 volumes)", 79),
            ("《水浒传》", "Water Margin", 59),
            ("《论语译注》", "The Analects, with translation and notes", 39),
            ("《唐诗三百首》", "Three Hundred Tang Poems", 35),
            ("《Python 编程入门》", "Python Programming for Beginners", 89),
            ("《机器学习实战指南》", "A Practical Guide to Machine Learning", 109),
            ("《儿童百科全书》精装", "Children's Encyclopedia (hardcover)", 168),
            ("《新概念英语》第二册", "New Concept English, Book 2", 42),
            ("《家常菜谱大全》", "Everyday Home Cooking: The Complete Cookbook", 58),
            ("《世界历史简明读本》", "A Concise History of the World", 68),
            ("《小王子》中英双语版", "The Little Prince (Chinese-English bilingual)", 32),
            ("《傲慢与偏见》", "Pride and Prejudice", 36),
            ("《时间管理的艺术》", "The Art of Time Management", 49),
            ("《HSK 四级词汇精讲》", "HSK Level 4 Vocabulary Explained", 45),
        ],
    ),
    *_lines(
        "beauty",
        "single",
        [
            ("玻尿酸保湿精华液 30ml", "Hyaluronic acid hydrating serum, 30 ml", 159),
            ("氨基酸温和洁面乳 120g", "Gentle amino-acid facial cleanser, 120 g", 69),
            ("清爽防晒霜 SPF50+", "Lightweight sunscreen SPF50+", 99),
            ("烟酰胺亮肤面膜 10 片", "Niacinamide brightening sheet masks, 10 pack", 89),
            ("植物精油护发素 500ml", "Botanical oil hair conditioner, 500 ml", 59),
            ("保湿修护面霜 50g", "Moisture repair face cream, 50 g", 199),
            ("持久防水眼线笔", "Long-wear waterproof eyeliner", 49),
            ("温和卸妆水 400ml", "Micellar cleansing water, 400 ml", 79),
            ("男士控油洗面奶", "Men's oil-control face wash", 49),
            ("护手霜礼盒三支装", "Hand cream gift set, 3 tubes", 69),
        ],
    ),
    *_lines("beauty", "shades", [("丝绒哑光口红", "Velvet matte lipstick", 129)]),
    *_lines(
        "toys",
        "single",
        [
            ("益智积木 城市消防局", "Building blocks: city fire station", 299),
            ("1:16 遥控越野车", "Remote-control off-road car, 1:16", 199),
            ("儿童磁力片 100 片", "Magnetic tiles for kids, 100 pieces", 159),
            ("大熊猫毛绒公仔 40cm", "Plush giant panda, 40 cm", 89),
            ("木质拼图 动物乐园", "Wooden jigsaw puzzle: animal park", 49),
            ("儿童磁性画板", "Kids' magnetic drawing board", 69),
            ("家庭策略桌游", "Family strategy board game", 129),
            ("三阶竞速魔方", "Speed cube 3x3", 39),
            ("编程机器人入门套装", "Coding robot starter kit", 399),
            ("全自动泡泡机", "Automatic bubble machine", 59),
        ],
    ),
    *_lines(
        "snacks",
        "single",
        [
            ("每日坚果 30 袋装", "Daily mixed nuts, 30 sachets", 129),
            ("五香牛肉干 250g", "Five-spice beef jerky, 250 g", 69),
            ("四川麻辣火锅底料 500g", "Sichuan spicy hot pot base, 500 g", 35),
            ("手工凤梨酥礼盒 12 枚", "Handmade pineapple cakes, gift box of 12", 88),
            ("柳州螺蛳粉 5 袋装", "Liuzhou river snail rice noodles, 5 packs", 59),
            ("85% 黑巧克力 100g", "85% dark chocolate, 100 g", 32),
            ("冻干草莓脆 50g", "Freeze-dried strawberry crisps, 50 g", 29),
            ("五常大米 5kg", "Wuchang rice, 5 kg", 89),
            ("老式鸡蛋糕 1kg", "Old-style sponge cakes, 1 kg", 39),
            ("原味海苔脆片 12 包", "Crispy seaweed snacks, original, 12 packs", 36),
        ],
    ),
    *_lines(
        "tea-coffee",
        "single",
        [
            (
                "西湖龙井 明前特级 100g",
                "West Lake Longjing green tea, pre-Qingming grade, 100 g",
                268,
            ),
            ("云南普洱熟茶饼 357g", "Yunnan ripe pu-erh tea cake, 357 g", 198),
            ("安溪铁观音 250g", "Anxi Tieguanyin oolong tea, 250 g", 158),
            ("武夷山大红袍礼盒", "Wuyi Da Hong Pao rock tea gift box", 328),
            (
                "云南小粒咖啡豆 中度烘焙 500g",
                "Yunnan arabica coffee beans, medium roast, 500 g",
                99,
            ),
            ("冻干速溶黑咖啡 24 颗", "Freeze-dried instant black coffee, 24 servings", 69),
            ("挂耳咖啡综合装 20 包", "Drip-bag coffee assortment, 20 bags", 79),
            ("茉莉花茶罐装 200g", "Jasmine green tea, 200 g tin", 88),
            ("白桃乌龙冷泡茶 30 包", "Cold-brew white peach oolong tea, 30 bags", 59),
        ],
    ),
    *_lines("sports", "sizes-mf", [("速干运动T恤", "Quick-dry sports T-shirt", 79)]),
    *_lines(
        "sports",
        "single",
        [
            ("加厚防滑瑜伽垫 8mm", "Extra-thick non-slip yoga mat, 8 mm", 99),
            ("可调节哑铃 20kg 一对", "Adjustable dumbbells, 20 kg pair", 459),
            ("户外防雨双人帐篷", "Two-person waterproof tent", 399),
            ("折叠登山杖两支装", "Folding trekking poles, pair", 129),
            ("计数跳绳", "Counting jump rope", 39),
            ("碳素羽毛球拍双拍套装", "Carbon badminton rackets, set of 2", 219),
            ("轻量骑行头盔", "Lightweight cycling helmet", 189),
            ("运动水壶 1L", "Sports water bottle, 1 L", 49),
        ],
    ),
]

FIRST_PRODUCT_NUMBER = 10001


def catalog_products() -> list[dict[str, Any]]:
    """The catalog as ``products`` documents without stock (the seed sets stock and tags)."""
    products: list[dict[str, Any]] = []
    number = FIRST_PRODUCT_NUMBER
    for line in PRODUCT_LINES:
        category_zh, category_en = CATEGORIES[line.category]
        for suffix_zh, suffix_en, tag in VARIANTS[line.variants]:
            products.append(
                {
                    "_id": f"P{number:05d}",
                    "name_zh": f"{line.name_zh}（{suffix_zh}）" if suffix_zh else line.name_zh,
                    "name_en": f"{line.name_en}, {suffix_en}" if suffix_en else line.name_en,
                    "category": line.category,
                    "category_zh": category_zh,
                    "category_en": category_en,
                    "price_cents": round(line.price_yuan * 100),
                    "currency": "CNY",
                    "tags": [line.category, *([tag] if tag else [])],
                }
            )
            number += 1
    return products


def load_catalog(db: Database) -> list[dict[str, Any]]:
    """Every product in the ``products`` collection, by id (for the NLU product matcher, demo)."""
    return list(db[PRODUCTS].find({}).sort([("_id", ASCENDING)]))
