"""What the bot says, in Chinese and English: template variants per situation, and formatting.

Every template has two or more variants per language and ``render`` rotates through them per
conversation, so the customer never reads the same sentence on two consecutive turns (the
rotation index lives in the dialogue state). Slots are filled with ``str.format``: values are
inserted as text, never evaluated, so customer text inside a slot is harmless.

Facts in the fallback answers agree with data/faq/*.yaml (the FAQ is preferred when it matches).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

LANGUAGES = ("zh", "en")

# Display names of intents, used when offering choices while clarifying.
INTENT_NAMES: dict[str, dict[str, str]] = {
    "cancel_order": {"zh": "取消订单", "en": "Cancel an order"},
    "change_order": {"zh": "修改订单", "en": "Change an order"},
    "change_shipping_address": {"zh": "修改收货地址", "en": "Change the shipping address"},
    "check_cancellation_fee": {"zh": "取消订单的费用", "en": "Cancellation fees"},
    "check_invoice": {"zh": "查看发票", "en": "Check an invoice"},
    "check_payment_methods": {"zh": "支付方式", "en": "Payment methods"},
    "check_refund_policy": {"zh": "退款政策", "en": "Refund policy"},
    "complaint": {"zh": "投诉", "en": "Make a complaint"},
    "contact_customer_service": {"zh": "联系客服", "en": "Contact customer service"},
    "contact_human_agent": {"zh": "转人工客服", "en": "Talk to a person"},
    "create_account": {"zh": "注册账户", "en": "Create an account"},
    "delete_account": {"zh": "注销账户", "en": "Delete an account"},
    "delivery_options": {"zh": "配送方式", "en": "Delivery options"},
    "delivery_period": {"zh": "配送时效", "en": "Delivery time"},
    "edit_account": {"zh": "修改账户信息", "en": "Edit account details"},
    "get_invoice": {"zh": "开发票", "en": "Get an invoice"},
    "get_refund": {"zh": "退货退款", "en": "Return an item for a refund"},
    "newsletter_subscription": {"zh": "订阅资讯", "en": "Newsletter"},
    "payment_issue": {"zh": "支付问题", "en": "A payment problem"},
    "place_order": {"zh": "下单", "en": "Place an order"},
    "recover_password": {"zh": "找回密码", "en": "Recover a password"},
    "registration_problems": {"zh": "注册问题", "en": "Registration problems"},
    "review": {"zh": "评价商品", "en": "Leave a review"},
    "set_up_shipping_address": {"zh": "设置收货地址", "en": "Set up a shipping address"},
    "switch_account": {"zh": "切换账户", "en": "Switch accounts"},
    "track_order": {"zh": "查询物流", "en": "Track an order"},
    "track_refund": {"zh": "查询退款进度", "en": "Track a refund"},
    "greeting": {"zh": "打招呼", "en": "Say hello"},
    "thanks": {"zh": "致谢", "en": "Say thanks"},
    "goodbye": {"zh": "再见", "en": "Say goodbye"},
}

STATUS_NAMES: dict[str, dict[str, str]] = {
    "pending": {"zh": "待付款", "en": "awaiting payment"},
    "paid": {"zh": "已付款，待发货", "en": "paid, not shipped yet"},
    "shipped": {"zh": "已发货", "en": "shipped"},
    "delivered": {"zh": "已签收", "en": "delivered"},
    "cancelled": {"zh": "已取消", "en": "cancelled"},
    "returned": {"zh": "已退货", "en": "returned"},
}

_V = tuple[str, ...]
T = dict[str, _V]

TEMPLATES: dict[str, T] = {
    # -- small talk ------------------------------------------------------------------------------
    "greeting": {
        "zh": (
            "您好！我是智能客服，可以帮您查订单、取消订单、改地址、退货退款，也能解答配送和支付问题。请问有什么可以帮您？",
            "您好，欢迎咨询！订单、物流、退款、发票、账户问题都可以问我。",
            "您好～请问今天想了解什么？",
        ),
        "en": (
            "Hello! I can track, cancel or change your orders, start a return, and answer questions about delivery and payment. How can I help?",
            "Hi there, welcome! Ask me about orders, delivery, refunds, invoices or your account.",
            "Hello! What can I do for you today?",
        ),
    },
    "thanks": {
        "zh": (
            "不客气！还有其他可以帮您的吗？",
            "很高兴能帮到您，还有别的问题随时问我。",
            "不用谢～还需要什么帮助吗？",
        ),
        "en": (
            "You're welcome! Is there anything else I can help with?",
            "Glad I could help. Anything else?",
            "My pleasure. Let me know if you need anything else.",
        ),
    },
    "already_registered": {
        "zh": (
            "这个手机号或邮箱已经注册过账户了：直接用它登录，或在登录页点“忘记密码”重新设置密码即可。",
            "提示已注册，说明这个手机号或邮箱已有账户。可以直接登录；忘了密码的话在登录页点“忘记密码”找回。",
        ),
        "en": (
            "That number or e-mail already has an account: log in with it, or tap Forgot Password on the login page to set a new password.",
            "It means there's already an account with that number or e-mail. Just log in, or use Forgot Password on the login page if you don't remember it.",
        ),
    },
    "forgot_login_name": {
        "zh": (
            "您可以直接用注册时的手机号或邮箱登录。如果不确定用的是哪个，在登录页点“忘记密码”，输入手机号或邮箱试一下，能收到验证码的就是您的账号。",
            "登录不需要用户名，用注册的手机号或邮箱就可以。记不清是哪个的话，在登录页点“忘记密码”逐个试一下，收到验证码的就是。",
        ),
        "en": (
            "You can log in with the phone number or e-mail you registered with. Not sure which one? Tap Forgot Password on the login page and enter each: the one that gets a code is your account.",
            "There's no need for a username: your registered phone number or e-mail works as your login. If you're not sure which, try them under Forgot Password on the login page.",
        ),
    },
    "language_ok": {
        "zh": (
            "好的，我用中文为您服务。请问有什么可以帮您？",
            "没问题，之后用中文回复您。请问需要什么帮助？",
        ),
        "en": (
            "Sure, I'll reply in English. How can I help?",
            "Of course, English it is. What can I do for you?",
        ),
    },
    "nothing_to_pick": {
        "zh": (
            "请问您指的是哪一个？可以直接发订单号或商品名称给我。",
            "不好意思，没太明白是哪一个，麻烦发一下订单号或商品名称～",
        ),
        "en": (
            "Which one do you mean? You can send me the order number or the product's name.",
            "Sorry, I'm not sure which one you mean. Could you send the order number or the product name?",
        ),
    },
    "order_help": {
        "zh": (
            "好的，请问订单需要什么帮助？查物流、修改或取消订单、改地址、退货退款，还是发票？",
            "没问题，是想查物流、改单或取消、退货退款，还是开发票呢？",
        ),
        "en": (
            "Sure. What do you need with the order: track it, change or cancel it, change the address, return it, or an invoice?",
            "Happy to help. Is it about tracking, changing or cancelling, a return or refund, or an invoice?",
        ),
    },
    "bot_identity": {
        "zh": (
            "我是智能客服助手，可以帮您查订单和物流、退换货、发票、支付和账户问题。想找人工客服的话，回复“转人工”就行。",
            "您好，我是在线智能助手～订单、配送、退款、发票和账户的问题都可以问我；需要真人服务请回复“转人工”。",
        ),
        "en": (
            "I'm the shop's virtual assistant: I can help with orders and delivery, returns, refunds, invoices, payments and your account. If you'd rather talk to a person, just say \"human agent\".",
            'I\'m an automated assistant. Ask me about an order, delivery, a refund, an invoice or your account; to reach a member of our team, say "human agent".',
        ),
    },
    "exchange": {
        "zh": (
            "签收后7天内、商品完好可以申请换货，质量问题30天内可换。请在“我的订单”里找到这笔订单，点“申请售后”选择“换货”，填写想换的尺码或颜色即可。也可以先退货再重新下单。",
            "可以换货的：签收7天内商品完好，或30天内有质量问题。在“我的订单”中点“申请售后”→“换货”，选好新的尺码或颜色提交就行。",
        ),
        "en": (
            "You can exchange an item within 7 days of delivery if it's in good condition, or within 30 days for a quality problem. In My Orders, open the order, tap After-sales, choose Exchange and pick the new size or colour. You can also return it and order again.",
            "Exchanges are possible within 7 days of delivery (item in good condition) or 30 days for quality problems: My Orders > the order > After-sales > Exchange, then choose the size or colour you want.",
        ),
    },
    "suggestions": {
        "zh": (
            "为您推荐这几款：{items}\n想看看别的类型的话，告诉我就行。",
            "您可以看看这几款：{items}",
        ),
        "en": (
            "Here are a few you might like:{items}\nTell me if you'd like another kind of product.",
            "You could have a look at these:{items}",
        ),
    },
    "no_suggestions": {
        "zh": (
            "抱歉，这会儿没有合适的商品可以推荐。告诉我您想找哪类商品，比如“推荐一款耳机”，我再帮您看看。",
            "暂时没找到适合推荐的商品。您想找哪类商品呢？比如“有什么充电宝推荐”。",
        ),
        "en": (
            'Sorry, I have nothing to suggest right now. Tell me what kind of product you\'re after, for example "recommend some earphones".',
            'I couldn\'t find anything to suggest just now. What kind of product are you looking for? For example "any good phone cases?"',
        ),
    },
    "not_resolved": {
        "zh": (
            "抱歉没能帮到您。能再具体说说遇到的问题吗？需要人工客服的话，回复“转人工”就行。",
            "不好意思，问题还没解决。麻烦再描述一下情况，或者回复“转人工”找人工客服。",
        ),
        "en": (
            "Sorry that didn't help. Could you tell me a bit more about the problem? If you'd rather talk to a person, just say \"human agent\".",
            "I'm sorry it's still not sorted. Can you describe what's wrong, or say \"human agent\" to reach our team?",
        ),
    },
    "nudge": {
        "zh": (
            "请问有什么可以帮您？可以直接说订单、物流、退款或账户的问题。",
            "在的～请问需要什么帮助？",
        ),
        "en": (
            "How can I help you today? Ask me about an order, delivery, a refund or your account.",
            "I'm here. What can I do for you?",
        ),
    },
    "acknowledged": {
        "zh": (
            "好的～还有其他可以帮您的吗？",
            "明白，还有别的问题随时问我。",
            "好嘞，还需要什么帮助吗？",
        ),
        "en": (
            "Alright. Is there anything else I can help with?",
            "Okay! Anything else?",
            "Got it. Let me know if you need anything else.",
        ),
    },
    "goodbye": {
        "zh": ("再见，祝您购物愉快！", "好的，有需要随时找我，再见！", "感谢您的咨询，再见～"),
        "en": (
            "Goodbye, and happy shopping!",
            "Bye! I'm here whenever you need me.",
            "Thanks for chatting. Have a great day!",
        ),
    },
    # -- unsure ----------------------------------------------------------------------------------
    "out_of_scope": {
        "zh": (
            "抱歉，这个问题我暂时帮不上忙。我可以帮您：查询物流、取消或修改订单、修改收货地址、退货退款、发票、支付和账户问题。",
            "这个超出了我能处理的范围～我擅长的是订单、配送、退款、发票和账户方面的问题，您可以换个问法试试。",
        ),
        "en": (
            "Sorry, I can't help with that one. I can track, cancel or change orders, update a shipping address, handle returns and refunds, invoices, payments and account questions.",
            "That's outside what I can do. I'm good with orders, delivery, refunds, invoices and your account; could you ask about one of those?",
        ),
    },
    "clarify_choices": {
        "zh": ("我不太确定您的意思，您是想：{choices}？", "抱歉没太理解，请问您是要{choices}？"),
        "en": (
            "I'm not quite sure what you mean. Do you want to: {choices}?",
            "Sorry, I didn't quite get that. Is it about {choices}?",
        ),
    },
    "clarify_rephrase": {
        "zh": (
            "抱歉，我没理解您的意思，能换个说法再说一次吗？",
            "不好意思，我没看懂，麻烦您再描述一下问题？",
        ),
        "en": (
            "Sorry, I didn't understand. Could you say it another way?",
            "I'm not sure I follow. Could you rephrase that?",
        ),
    },
    # -- order flows -----------------------------------------------------------------------------
    "ask_order_choice": {
        "zh": (
            "请问是哪一个订单？{orders}\n回复序号、订单号或商品名即可。",
            "您最近的订单有：{orders}\n请告诉我是第几个，或者直接发订单号。",
        ),
        "en": (
            "Which order is it?{orders}\nReply with the number, the order id or the product.",
            "Here are your recent orders:{orders}\nWhich one do you mean (number, order id or product)?",
        ),
    },
    "ask_order_choice_contact": {
        "zh": (
            "新的收货人信息（{contact}）已记下。请问是哪一个订单？{orders}\n回复序号或订单号即可。",
            "收到，改成{contact}。要改的是哪个订单呢？{orders}\n告诉我第几个或订单号就行。",
        ),
        "en": (
            "Got it, the new recipient details ({contact}) are noted. Which order is it?{orders}\nReply with the number or the order id.",
            "Noted: {contact}. Which order should get it?{orders}\nTell me the number or the order id.",
        ),
    },
    "ask_order_choice_again": {
        "zh": (
            "抱歉没对上，请回复序号（如“第一个”）或10位订单号：{orders}",
            "我没找到对应的订单，可以发一下订单号或序号吗？{orders}",
        ),
        "en": (
            'Sorry, I couldn\'t match that. Please reply with a number (e.g. "the first one") or the 10-digit order id:{orders}',
            "I couldn't tell which order you mean. Could you send its number or order id?{orders}",
        ),
    },
    "no_orders": {
        "zh": (
            "您的账户下暂时没有订单。如果是用其他账户下的单，请先切换账户再来咨询。",
            "我没有查到您账户下的订单，请确认是否使用了其他账户下单。",
        ),
        "en": (
            "I can't find any orders on your account. If you ordered with another account, please switch to it first.",
            "There are no orders on your account. Could the order have been placed with a different account?",
        ),
    },
    "no_eligible_orders": {
        "zh": (
            "您最近的订单里没有可以{what}的订单。{why}",
            "查了一下，您目前没有能{what}的订单。{why}",
        ),
        "en": (
            "None of your recent orders can {what} right now. {why}",
            "I checked: there's no order on your account that can {what} at the moment. {why}",
        ),
    },
    "no_refunds": {
        "zh": (
            "您最近的订单都没有退款记录。如果想退货，告诉我“退货”就可以。",
            "查了一下，您目前没有进行中的退款。",
        ),
        "en": (
            "None of your recent orders has a refund. If you'd like to return something, just tell me.",
            "There are no refunds on your recent orders.",
        ),
    },
    "order_not_found": {
        "zh": (
            "您的账户下没有找到订单{order_id}，请核对订单号是否正确。",
            "抱歉，在您的订单中查不到{order_id}，麻烦再确认一下订单号。",
        ),
        "en": (
            "I can't find order {order_id} among your orders. Please check the number.",
            "Order {order_id} isn't one of your orders, as far as I can see. Could you double-check it?",
        ),
    },
    "track_shipped": {
        "zh": (
            "订单{order_id}（{items}）已由{carrier}发货，运单号{tracking}，预计{eta}送达。",
            "您的订单{order_id}正在配送中：{carrier}，运单号{tracking}，预计{eta}到达。",
        ),
        "en": (
            "Order {order_id} ({items}) is on its way with {carrier}, tracking number {tracking}, expected {eta}.",
            "Your order {order_id} has shipped: {carrier}, tracking {tracking}, arriving around {eta}.",
        ),
    },
    "track_delivered": {
        "zh": (
            "订单{order_id}（{items}）已于{delivered}签收。",
            "系统显示订单{order_id}在{delivered}已经签收了。",
        ),
        "en": (
            "Order {order_id} ({items}) was delivered on {delivered}.",
            "Order {order_id} shows as delivered on {delivered}.",
        ),
    },
    "track_not_shipped": {
        "zh": (
            "订单{order_id}（{items}）目前状态：{status}，发货后我们会通知您物流信息。",
            "订单{order_id}还没有发货（{status}），发货后就能查到物流了。",
        ),
        "en": (
            "Order {order_id} ({items}) is {status}. You'll get tracking details as soon as it ships.",
            "Order {order_id} hasn't shipped yet ({status}); tracking appears once it does.",
        ),
    },
    "track_cancelled": {
        "zh": (
            "订单{order_id}（{items}）已取消。{refund_text}{why}",
            "订单{order_id}（{items}）目前是“已取消”状态。{refund_text}{why}",
        ),
        "en": (
            "Order {order_id} ({items}) is cancelled. {refund_text}{why}",
            "Order {order_id} ({items}) has been cancelled. {refund_text}{why}",
        ),
    },
    "track_closed": {
        "zh": ("订单{order_id}的状态是：{status}。", "订单{order_id}目前为“{status}”状态。"),
        "en": ("Order {order_id} is {status}.", "The status of order {order_id} is: {status}."),
    },
    "ask_cancel_confirm": {
        "zh": (
            "确认要取消订单{order_id}（{items}，{total}）吗？{fee_rule}请回复“确认”或“不取消”。",
            "订单{order_id}（{items}，{total}）还没发货，可以取消。{fee_rule}确定取消吗？",
        ),
        "en": (
            "Do you want me to cancel order {order_id} ({items}, {total})? {fee_rule} Reply yes or no.",
            "Order {order_id} ({items}, {total}) hasn't shipped, so it can be cancelled. {fee_rule} Shall I cancel it?",
        ),
    },
    "ask_confirm_again": {
        "zh": (
            "请回复“确认”继续，或回复“不用了”保持原样。",
            "需要我继续吗？回复“好的”或“不用了”。",
        ),
        "en": (
            "Please reply yes to go ahead, or no to leave it as it is.",
            "Shall I go ahead? Just say yes or no.",
        ),
    },
    "cancelled": {
        "zh": (
            "订单{order_id}已取消。{fee_text}{refund_text}",
            "已为您取消订单{order_id}。{fee_text}{refund_text}",
        ),
        "en": (
            "Order {order_id} is cancelled. {fee_text}{refund_text}",
            "Done: order {order_id} has been cancelled. {fee_text}{refund_text}",
        ),
    },
    "dropped": {
        "zh": (
            "好的，那先不处理了。还有其他可以帮您的吗？",
            "明白，这件事先放一放，有需要随时找我。",
        ),
        "en": (
            "OK, I'll leave that for now. Anything else I can do?",
            "No problem, I've dropped that request. Anything else?",
        ),
    },
    "requests_in_turn": {
        "zh": (
            "好的，我依次处理：先{first}，再{then}。",
            "收到，一件一件来：先{first}，然后{then}。",
        ),
        "en": (
            "Sure, one at a time: first I'll {first}, then {then}.",
            "Got it. Let's take them in turn: first I'll {first}, then {then}.",
        ),
    },
    "kept": {
        "zh": (
            "好的，订单{order_id}保持不变。还有其他需要吗？",
            "明白，不做修改，订单{order_id}照常处理。",
        ),
        "en": (
            "OK, I've left order {order_id} as it is. Anything else?",
            "Understood, no changes to order {order_id}.",
        ),
    },
    # "kept" when the customer asked for another change in the same message: that one follows
    "kept_going_on": {
        "zh": ("好的，订单{order_id}保持不变。", "明白，订单{order_id}不做修改。"),
        "en": (
            "OK, I've left order {order_id} as it is.",
            "Understood, no changes to order {order_id}.",
        ),
    },
    "cancel_refused": {
        "zh": (
            "订单{order_id}当前状态为“{status}”，无法直接取消。{advice}",
            "抱歉，订单{order_id}{status}，不能取消了。{advice}",
        ),
        "en": (
            "Order {order_id} is {status}, so it can't be cancelled any more. {advice}",
            "Sorry, order {order_id} is already {status} and can't be cancelled. {advice}",
        ),
    },
    "refuse_delivery": {
        "zh": (
            "订单{order_id}送到时直接拒收即可，包裹退回仓库后，款项会在1-3个工作日内原路退回。",
            "订单{order_id}派送时跟快递员说拒收就行；仓库收到退回的包裹后1-3个工作日内原路退款。",
        ),
        "en": (
            "When order {order_id} arrives, just refuse it at the door. Once the parcel is back in our warehouse, the refund goes to your original payment method within 1-3 working days.",
            "Just tell the courier you refuse order {order_id}. When it's back with us, you're refunded to your original payment method within 1-3 working days.",
        ),
    },
    "refuse_delivery_any": {
        "zh": (
            "可以的。包裹送到时直接拒收即可，退回仓库后，款项会在1-3个工作日内原路退回。",
            "可以，派送时跟快递员说拒收就行；仓库收到退回的包裹后1-3个工作日内原路退款。",
        ),
        "en": (
            "You can. When the parcel arrives, just refuse it at the door. Once it is back in our warehouse, the refund goes to your original payment method within 1-3 working days.",
            "Yes: tell the courier you refuse the parcel. When it's back with us, you're refunded to your original payment method within 1-3 working days.",
        ),
    },
    "ask_address": {
        "zh": (
            "请发送订单{order_id}的新收货地址（省市区+详细地址），当前地址是：{current}。",
            "好的，订单{order_id}要改到哪里？请发完整地址。现在的地址：{current}。",
        ),
        "en": (
            "Please send the new shipping address for order {order_id} (street, city, postal code). The current one is: {current}.",
            "Sure. Where should order {order_id} go instead? Current address: {current}.",
        ),
    },
    "ask_contact": {
        "zh": (
            "请发送订单{order_id}新的收货人电话（地址也要改的话，直接发完整新地址）。当前收货人：{current}。",
            "好的，订单{order_id}的收货电话要改成多少？当前是：{current}。",
        ),
        "en": (
            "Please send the new phone number for order {order_id} (or the whole new address if that changes too). Current recipient: {current}.",
            "Sure. What's the new phone number for order {order_id}? It's currently {current}.",
        ),
    },
    "ask_contact_again": {
        "zh": (
            "没能识别出电话号码，请直接发新的手机号，例如“13912345678”。",
            "请发新的收货人手机号（11位）。",
        ),
        "en": (
            "I couldn't find a phone number in that. Please send the new number, e.g. +86 139 1234 5678.",
            "Please send just the new phone number for the delivery.",
        ),
    },
    "ask_contact_confirm": {
        "zh": (
            "确认把订单{order_id}的收货人信息改为：{contact}？地址不变。",
            "订单{order_id}的收货电话改为{contact}，地址不变，确认吗？",
        ),
        "en": (
            "Change the recipient details of order {order_id} to {contact}? The address stays the same.",
            "New contact for order {order_id}: {contact}, same address. Shall I update it?",
        ),
    },
    "ask_address_again": {
        "zh": (
            "没能识别出地址，请发送完整地址，例如“上海市浦东新区世纪大道100号”。",
            "请直接发新的收货地址（含城市和门牌号）。",
        ),
        "en": (
            'I couldn\'t read an address in that. Please send the full address, e.g. "12 High Street, Springfield, 12345".',
            "Please send the new address with street, number and city.",
        ),
    },
    "ask_address_confirm": {
        "zh": (
            "确认把订单{order_id}的收货地址改为：{address}？",
            "新地址是：{address}，确认修改订单{order_id}吗？",
        ),
        "en": (
            "Change the shipping address of order {order_id} to: {address}?",
            "New address: {address}. Shall I update order {order_id}?",
        ),
    },
    "contact_changed": {
        "zh": (
            "已将订单{order_id}的收货人信息改为：{address}，收货地址不变。",
            "修改好了，订单{order_id}的收货电话现在是{address}，地址不变。",
        ),
        "en": (
            "Done: the recipient of order {order_id} is now {address}; the address is unchanged.",
            "Updated. Order {order_id} now has {address} as its contact, same address.",
        ),
    },
    "address_changed": {
        "zh": (
            "已将订单{order_id}的收货地址改为：{address}。",
            "地址修改成功，订单{order_id}将寄往：{address}。",
        ),
        "en": (
            "Done: order {order_id} will now ship to {address}.",
            "The shipping address of order {order_id} is now {address}.",
        ),
    },
    "address_refused": {
        "zh": (
            "订单{order_id}{status}，收货地址无法再修改。{advice}",
            "抱歉，订单{order_id}当前为“{status}”，不能改地址了。{advice}",
        ),
        "en": (
            "Order {order_id} is already {status}, so its address can't be changed. {advice}",
            "Sorry, order {order_id} is {status}; the address can no longer be changed. {advice}",
        ),
    },
    "change_order_open": {
        "zh": (
            "订单{order_id}还未发货，可以在“我的订单”中修改规格和数量；如果要改收货地址，直接告诉我“改地址”即可。",
            "订单{order_id}还没发货：规格、数量可在“我的订单”里修改，收货地址我可以帮您改。",
        ),
        "en": (
            "Order {order_id} hasn't shipped, so you can change size, colour or quantity under My Orders. If it's the address, just tell me and I'll change it.",
            "Order {order_id} can still be changed in My Orders. I can update the shipping address for you right here.",
        ),
    },
    "ask_address_city": {
        "zh": (
            "收到：{address}。还需要城市（例如“北京市”或“杭州市西湖区”），请补充一下。",
            "这个地址还缺城市：{address}。请告诉我在哪个城市，我把它补进去。",
        ),
        "en": (
            "Got it: {address}. Which city is that in? Please send the city (and postal code if you have it).",
            "I have {address}, but the city is missing. Please send the city so I can complete the address.",
        ),
    },
    "ask_address_street": {
        "zh": (
            "好的，{place}。请再发一下详细地址（街道、门牌号），收件人或电话要改也可以一起发。",
            "收到{place}，还需要街道和门牌号，请补充完整。",
        ),
        "en": (
            "OK, {place}. Please send the street and house number too.",
            "Got {place}. What's the street address (street and number)?",
        ),
    },
    "address_invalid": {
        "zh": (
            "订单{order_id}的新地址不完整，还没有修改。请发送完整地址：省市区+街道门牌号，例如“上海市浦东新区世纪大道100号”。",
            "这个地址系统没能接受（需要城市和详细地址），订单{order_id}的地址还没改。请重新发送完整的收货地址。",
        ),
        "en": (
            "That address is incomplete, so order {order_id} hasn't been changed. Please send the full address: street and number, city, postal code.",
            "The order system couldn't accept that address (it needs the street, city and postal code), so order {order_id} still has its old one. Please send the complete address.",
        ),
    },
    "suggested_price": {
        "zh": (
            "这一款是：{item}（以商品页的实时价格为准）。",
            "您问的是{item}，具体以商品页显示的价格为准。",
        ),
        "en": (
            "That one is {item} (the product page shows the current price).",
            "It's {item}; the price on the product page is the one that counts.",
        ),
    },
    "address_still_open": {
        "zh": (
            "订单{order_id}的新地址发给我，就可以继续帮您修改。",
            "另外，订单{order_id}的地址还没改，把新地址发给我就行。",
        ),
        "en": (
            "Send me the new address for order {order_id} whenever you're ready and I'll change it.",
            "Order {order_id}'s address is not changed yet: just send me the new one.",
        ),
    },
    "confirm_still_open": {
        "zh": (
            "订单{order_id}的操作还等您确认：回复“确认”继续，或“不用了”保持不变。",
            "另外，订单{order_id}还没处理，确认的话回复“确认”，不需要就回复“不用了”。",
        ),
        "en": (
            'Order {order_id} is still waiting for your answer: reply "yes" to go ahead or "no" to leave it as it is.',
            'I haven\'t changed order {order_id} yet: say "yes" to go ahead, or "no" to keep it.',
        ),
    },
    "others_orders": {
        "zh": (
            "为了保护每位顾客的隐私，我只能查询和处理您本人账户下的订单。请您的朋友或家人用下单的账户联系我们，我们一样会帮忙处理。",
            "抱歉，别人账户下的订单我这边查不到也改不了（保护隐私）。请下单人用自己的账户来咨询，我们会尽快帮他处理。",
        ),
        "en": (
            "To protect everyone's privacy, I can only look up orders on your own account. Please ask them to contact us from the account the order was placed with, and we'll help them the same way.",
            "Sorry, orders on someone else's account are private, so I can't see or change them. The person who placed it can reach us from their own account and we'll sort it out.",
        ),
    },
    "hurry_in_transit": {
        "zh": (
            "订单{order_id}已经交给快递在路上了，派送速度由快递公司安排，我们这边没法再加快，抱歉～如果过了预计送达时间还没到，告诉我，我帮您转人工跟快递核实。",
            "理解您着急～订单{order_id}已发出，目前在快递运输中，时效由快递决定，我这边无法催快。超过预计时间仍未送达的话，随时找我，我安排人工帮您追查。",
        ),
        "en": (
            "Order {order_id} is already with the courier, and I'm sorry, but we can't make it go faster from here. If it hasn't arrived by the expected date, tell me and I'll have a colleague check with the courier.",
            "I understand you're in a hurry. Order {order_id} has shipped, so its speed is up to the courier now and I can't rush it. If it's later than the expected date, let me know and a colleague will chase it with them.",
        ),
    },
    "change_variant_self": {
        "zh": (
            "尺码、颜色和数量需要您在“我的订单”里自己修改：订单{order_id}还没发货，现在还能改。我这边可以帮您改收货地址。",
            "订单{order_id}还没发货，规格（尺码、颜色）和数量请在“我的订单”→订单详情里修改；收货地址可以告诉我，我来改。",
        ),
        "en": (
            "Size, colour and quantity are changed under My Orders: order {order_id} hasn't shipped, so it can still be changed there. From here I can change the shipping address.",
            "You can switch the size, colour or quantity of order {order_id} yourself under My Orders (open the order, then Change); it hasn't shipped yet. The address I can change for you here.",
        ),
    },
    "change_order_closed": {
        "zh": (
            "订单{order_id}{status}，无法修改了；收货后可以申请退换货。",
            "抱歉，订单{order_id}当前为“{status}”，不能再修改。",
        ),
        "en": (
            "Order {order_id} is {status}, so it can't be changed now; you can return or exchange it after delivery.",
            "Sorry, order {order_id} is already {status} and can't be modified.",
        ),
    },
    "ask_return_items": {
        "zh": (
            "订单{order_id}里有：{items}。要退哪件？回复序号、商品名，或“全部”。",
            "请问要退订单{order_id}中的哪件商品？{items}\n（也可以回复“全部”）",
        ),
        "en": (
            'Order {order_id} contains:{items}\nWhich item do you want to return? Reply with its number, its name, or "all".',
            'Which item from order {order_id} should I return?{items}\n(Or say "all".)',
        ),
    },
    "ask_return_reason": {
        "zh": (
            "好的，请简单说一下订单{order_id}的退货原因（比如尺码不合适、质量问题、不想要了）。",
            "收到。订单{order_id}方便说下退货原因吗？",
        ),
        "en": (
            "Got it. What's the reason for returning from order {order_id} (e.g. wrong size, damaged, changed my mind)?",
            "OK. Could you tell me briefly why you're returning the item from order {order_id}?",
        ),
    },
    "return_created": {
        "zh": (
            "退货申请{return_id}已提交（订单{order_id}：{items}），预计退款{refund}。请按“我的订单”中的退货地址寄回商品。",
            "已为您提交退货申请{return_id}：{items}，退款金额{refund}，商品寄回后1-3个工作日处理。",
        ),
        "en": (
            "Return {return_id} is registered for order {order_id} ({items}); expected refund {refund}. Please send the items back using the address shown under My Orders.",
            "I've opened return {return_id} for {items}. Your refund of {refund} is processed 1-3 working days after the items arrive.",
        ),
    },
    "return_refused": {
        "zh": ("订单{order_id}暂时无法退货：{why}", "抱歉，订单{order_id}不能申请退货，{why}"),
        "en": (
            "Order {order_id} can't be returned: {why}",
            "Sorry, a return isn't possible for order {order_id}: {why}",
        ),
    },
    "refund_none_open": {
        "zh": (
            "订单{order_id}没有退款记录：订单还没有取消（{status}）。需要取消的话告诉我，取消后款项会原路退回。",
            "订单{order_id}目前是“{status}”，还没有取消，所以没有退款。要取消的话回复“取消订单”，退款会原路返回。",
        ),
        "en": (
            "There's no refund on order {order_id}: it hasn't been cancelled ({status}). If you want to cancel it, just tell me and the money goes back the way you paid.",
            'Order {order_id} is {status} and not cancelled, so there is no refund yet. Say "cancel it" if you want it cancelled; the refund goes back the way you paid.',
        ),
    },
    "refund_none_shipped": {
        "zh": (
            "订单{order_id}已经发货，还没有退款记录。收货后7天内可以申请退货，退货寄回入库后退款。",
            "订单{order_id}正在配送中，目前没有退款。签收后如需退货，告诉我“退货”即可，寄回后为您退款。",
        ),
        "en": (
            "Order {order_id} has shipped and has no refund. Once it's delivered you can return it within 7 days; the refund follows when the item is back.",
            "Order {order_id} is on its way, so there's no refund yet. After delivery just tell me you want to return it, and you'll be refunded once it's back.",
        ),
    },
    "refund_none": {
        "zh": (
            "订单{order_id}目前没有退款记录。如需退货，告诉我“退货”即可。",
            "查了一下，订单{order_id}还没有发起退款。",
        ),
        "en": (
            "There's no refund on order {order_id} yet. If you want to return it, just tell me.",
            "Order {order_id} has no refund in progress.",
        ),
    },
    "refund_pending": {
        "zh": (
            "订单{order_id}的退款{amount}正在处理中（申请于{requested}），一般1-3个工作日完成，到账银行卡最长7个工作日。",
            "退款{amount}正在处理，申请时间{requested}，请耐心等待1-3个工作日。",
        ),
        "en": (
            "The refund of {amount} for order {order_id} is being processed (requested {requested}); it usually completes in 1-3 working days, up to 7 for bank cards.",
            "Your refund of {amount} (requested {requested}) is in progress and normally takes 1-3 working days.",
        ),
    },
    "refund_done": {
        "zh": (
            "订单{order_id}的退款{amount}已于{completed}退回原支付方式。",
            "退款已完成：{amount}，{completed}原路退回。",
        ),
        "en": (
            "The refund of {amount} for order {order_id} was completed on {completed}, back to your original payment method.",
            "Your refund of {amount} went through on {completed}.",
        ),
    },
    "invoice_ready": {
        "zh": (
            "订单{order_id}的电子发票号码是{invoice}，可在订单详情中下载。",
            "发票已开具：{invoice}（订单{order_id}），在订单详情里能下载。",
        ),
        "en": (
            "The invoice for order {order_id} is {invoice}; you can download it from the order details.",
            "Order {order_id} has invoice {invoice}, available in the order details.",
        ),
    },
    "invoice_pending": {
        "zh": (
            "订单{order_id}的电子发票会在签收后24小时内开出，届时可在订单详情中下载。",
            "订单{order_id}的发票还没开出，签收后24小时内会自动开具。",
        ),
        "en": (
            "The invoice for order {order_id} is issued within 24 hours of delivery; you'll find it in the order details.",
            "There's no invoice on order {order_id} yet: it's issued within 24 hours after delivery.",
        ),
    },
    "order_busy": {
        "zh": (
            "抱歉，订单系统暂时繁忙，请稍等一分钟再试。",
            "订单系统现在有点忙，麻烦您一分钟后再问我一次。",
        ),
        "en": (
            "Sorry, the order system is busy right now. Please try again in a minute.",
            "I can't reach the order system at the moment; please try again in a minute.",
        ),
    },
    "order_error": {
        "zh": (
            "抱歉，处理订单{order_id}时出了点问题：{detail}",
            "订单{order_id}暂时无法处理：{detail}",
        ),
        "en": (
            "Sorry, something went wrong with order {order_id}: {detail}",
            "I couldn't complete that for order {order_id}: {detail}",
        ),
    },
    # -- handoff ---------------------------------------------------------------------------------
    "handoff_customer_request": {
        "zh": (
            "好的，正在为您转接人工客服，请稍候，客服会接着帮您处理。",
            "没问题，已为您转人工客服，请稍等片刻。",
        ),
        "en": (
            "Sure, I'm passing you to a member of our team now. Please hold on; they'll pick up from here.",
            "Of course, connecting you with a person. They'll be with you shortly.",
        ),
    },
    "handoff_dispute": {
        "zh": (
            "非常抱歉给您带来困扰！这个问题需要专人核实处理，我已为您优先转接人工客服，请稍候。",
            "真的很抱歉出现这种情况。我已把您的问题转给人工客服优先处理，请稍等。",
        ),
        "en": (
            "I'm really sorry about this. It needs a person to look into it, so I've passed you to our team as a priority. Please hold on.",
            "I'm very sorry for the trouble. I've handed this to a member of staff, who will look into it with priority.",
        ),
    },
    "handoff_negative_sentiment": {
        "zh": (
            "非常抱歉让您不满意了，我这就为您转接人工客服，会有专人帮您处理。",
            "很抱歉给您添麻烦了，已为您转接人工客服，请稍等。",
        ),
        "en": (
            "I'm so sorry this has been frustrating. I'm bringing in a member of our team to help you personally.",
            "I apologise for the trouble. A person from our team will take over now.",
        ),
    },
    "handoff_low_confidence": {
        "zh": (
            "抱歉，我没能理解您的问题，已为您转接人工客服，请稍候。",
            "不好意思，这个问题还是交给人工客服更合适，已为您转接。",
        ),
        "en": (
            "Sorry, I'm not understanding you well. I've asked a member of our team to take over.",
            "I don't want to keep guessing, so I'm passing you to a person who can help.",
        ),
    },
    "handoff_order_service_down": {
        "zh": (
            "抱歉，订单系统一直没有响应，我已为您转接人工客服继续处理。",
            "订单系统暂时无法使用，已为您转人工客服，请稍候。",
        ),
        "en": (
            "Sorry, the order system still isn't responding, so I've passed you to a member of our team.",
            "The order system is unavailable right now; a person from our team will help you instead.",
        ),
    },
    # -- pieces ------------------------------------------------------------------------------------
    "apology": {
        "zh": ("非常抱歉给您带来不便。", "很抱歉给您带来困扰。", "抱歉给您添麻烦了。"),
        "en": (
            "I'm sorry about the trouble.",
            "Sorry for the inconvenience.",
            "I apologise for that.",
        ),
    },
    "said_again": {
        "zh": ("不好意思没说清楚，我再说一遍：{previous}", "好的，我重复一下：{previous}"),
        "en": (
            "Sorry if that was unclear. Here it is again: {previous}",
            "Let me say that again: {previous}",
        ),
    },
    "repeat_lead": {
        "zh": ("再和您确认一下：", "补充说明一下："),
        "en": ("To repeat: ", "Just to confirm what I said: "),
    },
    "recommend": {
        "zh": ("您可能还喜欢：{items}。", "为您推荐：{items}。"),
        "en": ("You might also like: {items}.", "Customers also picked: {items}."),
    },
}

# Fallback answers of informational intents, used when no FAQ entry matches well enough.
INTENT_ANSWERS: dict[str, T] = {
    "check_payment_methods": {
        "zh": (
            "我们支持支付宝（含花呗）、微信支付、银联卡和Visa/Mastercard信用卡，部分城市支持货到付款。",
            "可以用支付宝（含花呗）、微信、银联卡或Visa/Mastercard付款，部分城市可货到付款。",
        ),
        "en": (
            "We accept Alipay (Huabei included), WeChat Pay, UnionPay cards and Visa/Mastercard; cash on delivery is available in some cities.",
            "You can pay with Alipay (Huabei included), WeChat Pay, UnionPay or Visa/Mastercard, and in some cities cash on delivery.",
        ),
    },
    "delivery_options": {
        "zh": (
            "提供标准配送（2-5天）和主要城市次日达加急（15元），满99元包邮，可在结算页选择。部分商品可寄往海外及港澳台，填写地址后结算页会显示能否配送。",
            "配送方式有标准配送和次日达加急两种，结算时可选；订单满99元免运费。寄往海外或港澳台的话，填好地址后结算页会显示是否支持。",
        ),
        "en": (
            "We offer standard delivery (2-5 days) and next-day express in major cities (CNY 15); orders over CNY 99 ship free. Some items also ship abroad: checkout shows whether yours can go to your address.",
            "Choose standard delivery or next-day express at checkout; shipping is free over CNY 99. Shipping abroad? Enter your address and checkout shows whether the item can go there.",
        ),
    },
    "delivery_period": {
        "zh": (
            "标准配送一般2-5天送达，偏远地区约5-10天，具体以物流信息为准。",
            "通常下单后2-5天能收到，偏远地区5-10天。",
        ),
        "en": (
            "Standard delivery takes 2-5 days, 5-10 days to remote areas; the tracking page has the exact date.",
            "Most orders arrive within 2-5 days (remote areas 5-10 days).",
        ),
    },
    "check_refund_policy": {
        "zh": (
            "签收后7天内支持无理由退货，质量问题30天内可退；退款原路返回。",
            "7天无理由退货，质量问题30天内可退，款项原路退回。",
        ),
        "en": (
            "You can return items within 7 days of delivery for any reason, or within 30 days for quality issues; refunds go back to your payment method.",
            "Returns are accepted within 7 days (30 days for defects), refunded to the original payment method.",
        ),
    },
    "check_cancellation_fee": {
        "zh": (
            "未付款或付款后24小时内取消免费；之后到发货前取消，收取订单金额5%的手续费（最多20元），其余原路退回。已发货的订单不能取消，签收后7天内可退货。",
            "付款24小时内取消不收费；超过24小时、还没发货的，手续费是订单金额的5%（封顶20元）。发货后就不能取消了，可以签收后7天内申请退货。",
        ),
        "en": (
            "Cancelling is free while unpaid and for 24 hours after payment; after that, until it ships, the fee is 5% of the total (at most ¥20). Shipped orders can't be cancelled; return them within 7 days of delivery instead.",
            "No fee within 24 hours of payment; later, before shipment, it's 5% of the order total, capped at ¥20. Once shipped, a return within 7 days of delivery is the way to go.",
        ),
    },
    "create_account": {
        "zh": (
            "在app或网站点击“注册”，用手机号或邮箱接收验证码并设置密码即可。",
            "注册很简单：点“注册”，验证手机号或邮箱，设置密码就好。",
        ),
        "en": (
            'Tap "Sign up" in the app or on the website, verify your phone or e-mail with the code we send, and set a password.',
            "To create an account, choose Sign up, confirm your phone or e-mail, then pick a password.",
        ),
    },
    "delete_account": {
        "zh": (
            "可在“设置-账户与安全-注销账户”中申请，注销前请确认没有未完成的订单和售后，注销后无法恢复。",
            "注销入口在“设置-账户与安全”。注意：注销后数据无法恢复。",
        ),
        "en": (
            "Go to Settings > Account & security > Delete account. Make sure no orders or returns are open; deletion can't be undone.",
            "You can delete your account under Settings > Account & security. This is permanent.",
        ),
    },
    "edit_account": {
        "zh": (
            "在“我的-设置-个人资料”中可以修改昵称、手机号、邮箱等信息。",
            "个人信息可以在“设置-个人资料”里修改。",
        ),
        "en": (
            "You can change your name, phone number and e-mail under Me > Settings > Profile.",
            "Profile details can be edited in Settings > Profile.",
        ),
    },
    "recover_password": {
        "zh": (
            "在登录页点击“忘记密码”，通过绑定的手机号或邮箱接收验证码后设置新密码。",
            "点登录页的“忘记密码”，验证手机或邮箱后即可重设。",
        ),
        "en": (
            'On the sign-in page choose "Forgot password", confirm the code sent to your phone or e-mail, and set a new password.',
            'Use "Forgot password" on the sign-in page to reset it with a code to your phone or e-mail.',
        ),
    },
    "registration_problems": {
        "zh": (
            "收不到验证码请检查号码是否正确、短信是否被拦截，稍后再试；仍不行可以转人工客服。",
            "注册遇到问题的话，先确认手机号或邮箱填写正确，并检查验证码是否被拦截。",
        ),
        "en": (
            "If the code doesn't arrive, check the number or address, look in spam or blocked messages, and try again in a minute.",
            "Registration trouble is usually the verification code: check your number or e-mail and your spam folder, then retry.",
        ),
    },
    "switch_account": {
        "zh": (
            "在“我的-设置”中退出当前账户，再用另一个账户登录即可。",
            "先退出登录，再登录另一个账户就可以切换。",
        ),
        "en": (
            "Sign out under Me > Settings, then sign in with the other account.",
            "To switch, log out and log back in with the other account.",
        ),
    },
    "newsletter_subscription": {
        "zh": (
            "在“我的-设置-消息通知”中可以订阅或退订优惠资讯。",
            "订阅或退订资讯请到“设置-消息通知”。",
        ),
        "en": (
            "You can subscribe to or unsubscribe from our newsletter under Settings > Notifications.",
            "Newsletter preferences are in Settings > Notifications.",
        ),
    },
    "contact_customer_service": {
        "zh": (
            "客服每天9:00-22:00在线，热线400-800-1234，也可以直接在这里咨询我。",
            "人工客服时间每天9:00-22:00，电话400-800-1234。",
        ),
        "en": (
            "Customer service is available 9:00-22:00 every day on 400-800-1234, or right here in chat.",
            "You can reach us daily 9:00-22:00 at 400-800-1234, or keep chatting with me.",
        ),
    },
    "place_order": {
        "zh": (
            "选好商品后加入购物车，点击“结算”，确认地址和支付方式后提交订单即可。",
            "下单步骤：加入购物车 → 结算 → 确认地址和支付 → 提交。",
        ),
        "en": (
            "Add the items to your cart, tap Checkout, confirm the address and payment method, and place the order.",
            "To order: add to cart, check out, confirm address and payment, done.",
        ),
    },
    "review": {
        "zh": (
            "签收后在“我的订单”中点击“评价”，就可以为商品打分和留言。",
            "收货后可在订单里点“评价”发表评价，感谢您的反馈！",
        ),
        "en": (
            "After delivery, open the order under My Orders and tap Review to rate the product.",
            "You can leave a review from My Orders once the order is delivered. Thanks for the feedback!",
        ),
    },
    "payment_issue": {
        "zh": (
            "请确认银行卡余额和限额，换一种支付方式重试；如果已扣款但订单未支付，款项会自动原路退回。",
            "支付失败的话可以换个支付方式试试；重复或多扣的款项会自动退回。",
        ),
        "en": (
            "Please check your card balance and limits and try another payment method; if you were charged but the order shows unpaid, the money is refunded automatically.",
            "Try a different payment method; any amount taken without a paid order is refunded automatically.",
        ),
    },
    "set_up_shipping_address": {
        "zh": (
            "在“我的-收货地址”中可以新增、编辑地址并设置默认地址。",
            "收货地址在“我的-收货地址”里管理，可以设置默认地址。",
        ),
        "en": (
            "Add or edit addresses under Me > Addresses, where you can also set a default one.",
            "Your address book is under Me > Addresses; pick one as the default.",
        ),
    },
}

# Why an order cannot do something, and what to do instead.
ADVICE: dict[str, dict[str, str]] = {
    "shipped_cancel": {
        "zh": "可以拒收包裹，或签收后申请7天无理由退货。",
        "en": "You can refuse the delivery, or return it within 7 days of delivery.",
    },
    "already_closed": {"zh": "", "en": ""},
    "shipped_address": {
        "zh": "可以联系快递公司尝试改派。",
        "en": "You could ask the carrier to redirect the parcel.",
    },
    "not_delivered": {
        "zh": "订单还没签收，签收后才能申请退货。",
        "en": "it hasn't been delivered yet; returns open after delivery.",
    },
    "not_delivered_open": {
        "zh": "订单还没发货，可以直接取消订单。",
        "en": "it hasn't shipped yet, so you can simply cancel it.",
    },
    "window_closed": {
        # the FAQ promises 30 days for quality problems: people handle those after day 7
        "zh": "已超过退货期限（{deadline}）。如果是质量问题，签收后30天内可以转人工客服处理。",
        "en": (
            "the return window closed on {deadline}. If the item is faulty, our team can still "
            "help within 30 days of delivery: just ask for a person."
        ),
    },
    "window_passed": {
        "zh": "已超过签收后7天的退货期限。",
        "en": "the 7-day return window after delivery has closed.",
    },
    "return_generic": {
        "zh": "该订单目前不符合退货条件，如有疑问可以转人工客服。",
        "en": "it doesn't meet the return conditions right now; a person from our team can look into it if you like.",
    },
    "already_returned": {"zh": "该订单已经退货。", "en": "it has already been returned."},
    "cancel_what": {"zh": "取消", "en": "be cancelled"},
    "cancel_why": {
        "zh": "发货前的订单才能取消。",
        "en": "Only orders that haven't shipped can be cancelled.",
    },
    "address_what": {"zh": "修改地址", "en": "have its address changed"},
    "address_why": {
        "zh": "发货前的订单才能改地址。",
        "en": "Addresses can only change before shipment.",
    },
    "change_what": {"zh": "修改", "en": "be changed"},
    "change_why": {
        "zh": "发货前的订单才能修改商品、数量或规格；已发货的可以签收后申请换货。",
        "en": "Items, sizes and quantities can only change before shipment; after delivery you can ask for an exchange.",
    },
    "return_what": {"zh": "退货", "en": "be returned"},
    "return_why": {
        "zh": "签收后7天内的订单才能申请退货。",
        "en": "Returns are possible for delivered orders within the return window.",
    },
    "return_why_faulty": {
        "zh": "签收后7天内可以无理由退货；如果是质量问题或发错货，签收后30天内可以回复“转人工”，由同事为您处理。",
        "en": (
            "Returns are possible within 7 days of delivery; for a faulty or wrong item our team "
            "can still help within 30 days of delivery: just ask for a person."
        ),
    },
    "return_why_size": {
        "zh": "尺码不合适可以在签收后7天内申请无理由退换，您目前没有在这个期限内的订单；还在路上的订单，签收后7天内都可以申请。",
        "en": (
            "A wrong size can be returned within 7 days of delivery, and none of your orders is "
            "inside that window now; an order still on its way can be returned within 7 days "
            "once it arrives."
        ),
    },
    "refund_what": {"zh": "查询退款", "en": "have a refund"},
    "refund_why": {"zh": "", "en": ""},
    "fee_free": {"zh": "本次取消不收费。", "en": "No fee was charged. "},
    "fee_charged": {
        "zh": "收取取消手续费{fee}。",
        "en": "A cancellation fee of {fee} was charged. ",
    },
    "refund_back": {
        "zh": "{refund}将原路退回。",
        "en": "{refund} goes back to your original payment method.",
    },
    # an order number of the wrong length ("77301928"), said before the list of orders
    "product_not_in_orders": {
        "zh": "您最近的订单里没有找到“{product}”。",
        "en": "I couldn't find {product} in your recent orders. ",
    },
    "language_ok": {"zh": "好的，我用中文回复您。", "en": "Sure, I'll reply in English. "},
    "not_an_order_id": {
        "zh": "“{number}”不是订单号（订单号是10位数字）。",
        "en": '"{number}" isn\'t an order number (they have 10 digits). ',
    },
    # asked why an order was cancelled: the order system keeps no reason, so the two usual ones
    # are named and a person offered for the rest
    "cancel_reasons": {
        "zh": "订单会在您本人取消、或未在时限内付款时关闭；如果不是这两种情况，回复“转人工”，我请同事帮您核实。",
        "en": 'Orders close when they are cancelled from the account or not paid in time; if neither fits, reply "agent" and a colleague will look into it.',
    },
    "refund_returned": {
        "zh": "已付的{refund}已原路退回。",
        "en": "The {refund} you paid has been refunded to your original payment method. ",
    },
    "refund_on_way": {
        "zh": "已付的{refund}正在原路退回。",
        "en": "The {refund} you paid is on its way back to your original payment method. ",
    },
    "never_paid": {
        "zh": "这笔订单没有付款，不会扣费。",
        "en": "It was never paid, so nothing was charged. ",
    },
    "nothing_paid": {
        "zh": "订单未付款，无需退款。",
        "en": "Nothing was paid, so there is nothing to refund.",
    },
    # the fee rule of services/orders/rules.py, stated before the customer confirms
    "fee_rule_unpaid": {
        "zh": "订单还未付款，取消不产生任何费用。",
        "en": "It hasn't been paid, so cancelling costs nothing.",
    },
    "fee_rule_free": {
        "zh": "付款未满24小时，现在取消免费，{total}原路退回。",
        "en": "It was paid less than 24 hours ago, so cancelling is free and {total} is refunded.",
    },
    "fee_rule_fee": {
        "zh": "付款已超过24小时，取消需收取订单金额5%的手续费{fee}（最多20元），其余{refund}原路退回。",
        "en": "It was paid more than 24 hours ago, so a fee of {fee} applies (5% of the total, at most ¥20) and {refund} is refunded.",
    },
    "all_items": {"zh": "全部商品", "en": "all items"},
    # what "requests_in_turn" says of each change asked for in one message
    "do_cancel_order": {"zh": "取消订单{order_id}", "en": "cancel order {order_id}"},
    "do_get_refund": {
        "zh": "办理订单{order_id}的退货",
        "en": "help you return items of order {order_id}",
    },
    "do_change_shipping_address": {
        "zh": "修改订单{order_id}的收货地址",
        "en": "change the address of order {order_id}",
    },
    "list_sep": {"zh": "、", "en": ", "},
    "or_sep": {"zh": "、还是", "en": ", or "},
}

CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class TemplateError(KeyError):
    """A template id or language that does not exist (a programming error, not bad input)."""


def variants(template_id: str, language: str) -> Sequence[str]:
    table = TEMPLATES.get(template_id)
    if table is None and template_id.startswith("intent:"):
        table = INTENT_ANSWERS.get(template_id.removeprefix("intent:"))
    if table is None:
        raise TemplateError(f"no template {template_id!r}")
    lang = language if language in table else "en"
    return table[lang]


def has_intent_answer(intent: str) -> bool:
    return intent in INTENT_ANSWERS


def render(
    template_id: str, language: str, slots: Mapping[str, str], rotation: dict[str, int]
) -> str:
    """Fill the next variant of a template; ``rotation`` (from the dialogue state) is updated so
    the following use of the same template picks a different variant."""
    options = variants(template_id, language)
    index = (rotation.get(template_id, -1) + 1) % len(options)
    rotation[template_id] = index
    # strip: an English advice slot ends with the space before what may follow it, or nothing
    return options[index].format_map(dict(slots)).strip()


def advice(key: str, language: str, **slots: str) -> str:
    text = ADVICE[key]["zh" if language == "zh" else "en"]
    return text.format_map(slots) if slots else text


def money(currency: str, cents: int) -> str:
    amount = f"{cents / 100:.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}".strip()


def date_text(when: dt.datetime | dt.date | None, language: str) -> str:
    if when is None:
        return "待定" if language == "zh" else "to be confirmed"
    if language == "zh":
        return f"{when.month}月{when.day}日"
    return f"{_MONTHS[when.month - 1]} {when.day}"


def status_name(status: str, language: str) -> str:
    return STATUS_NAMES.get(status, {}).get(language, status)


# Carriers as OrderService stores them (Chinese names) and how an English reply names them.
CARRIER_NAMES_EN = {
    "顺丰": "SF Express", "京东": "JD Logistics", "中通": "ZTO Express", "圆通": "YTO Express",
    "申通": "STO Express", "韵达": "Yunda Express", "邮政": "China Post", "极兔": "J&T Express",
}  # fmt: skip


def carrier_name(carrier: str, language: str) -> str:
    return CARRIER_NAMES_EN.get(carrier, carrier) if language == "en" else carrier


def intent_name(intent: str, language: str) -> str:
    return INTENT_NAMES.get(intent, {}).get(language, intent.replace("_", " "))


def join_list(items: Sequence[str], language: str) -> str:
    return advice("list_sep", language).join(items)


def join_choices(items: Sequence[str], language: str) -> str:
    """ "A, B, or C" / "A、B、还是C" for questions that offer choices."""
    if len(items) <= 1:
        return "".join(items)
    return advice("list_sep", language).join(items[:-1]) + advice("or_sep", language) + items[-1]
