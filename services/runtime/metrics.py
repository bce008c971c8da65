"""The Prometheus metrics of the design, declared once so every service exports the same names.

Grafana dashboards and alert rules query exactly these names (a test checks that).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets sized for a pipeline whose p99 budget is 100 ms end to end.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
)

MESSAGES = Counter(
    "kefu_messages_total",
    "Messages processed, by service and outcome (ok, dlq, duplicate, skipped)",
    ["service", "outcome"],
)
STAGE_SECONDS = Histogram(
    "kefu_stage_seconds",
    "Time a message spends inside one stage",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "kefu_end_to_end_seconds",
    "From the customer's sent_at to the outbound reply",
    buckets=LATENCY_BUCKETS,
)
MODEL_INFERENCE_SECONDS = Histogram(
    "kefu_model_inference_seconds",
    "Model inference time per batch",
    ["service", "model"],
    buckets=LATENCY_BUCKETS,
)
MODEL_BATCH_SIZE = Histogram(
    "kefu_model_batch_size",
    "Messages per encoder batch",
    ["service"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
MODEL_VERSION = Gauge(
    "kefu_model_version_info",
    "1 for the model version a service has loaded",
    ["service", "model", "version"],
)
INTENTS = Counter("kefu_intents_total", "Intents recognised", ["intent", "language"])
SENTIMENTS = Counter("kefu_sentiment_total", "Sentiment labels assigned", ["label"])
REPLIES = Counter("kefu_replies_total", "Reply actions taken", ["action", "language"])
HANDOFFS = Counter("kefu_handoffs_total", "Conversations handed to a person", ["reason"])
FAQ_QUERY_VECTORS = Counter(
    "kefu_faq_query_vectors_total",
    "FAQ searches by where the message's vector came from: carried (nlu's), computed (encoder "
    "run again in reply: another encoder version, order ids left out, or the embedding was "
    "missing) or product_as_item (a second search with the products named written as 'this item')",
    ["source"],
)
RECOMMENDATIONS = Counter(
    "kefu_recommendations_total", "Recommendation decisions (attached or why skipped)", ["outcome"]
)
DLQ = Counter("kefu_dlq_total", "Messages sent to the DLQ", ["service", "reason"])
ORDER_RPC_SECONDS = Histogram(
    "kefu_order_rpc_seconds",
    "OrderService calls, by method and gRPC status code",
    ["method", "code"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "kefu_consumer_lag",
    "Messages not yet consumed by a service's consumer group",
    ["service", "topic"],
)
MONGO_COMMAND_SECONDS = Histogram(
    "kefu_mongo_command_seconds",
    "MongoDB commands sent by this process, by command, collection and outcome",
    ["command", "collection", "outcome"],
    buckets=LATENCY_BUCKETS,
)
