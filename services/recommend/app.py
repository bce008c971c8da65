"""The recommend Faust agent (placeholder until the models land: forwards and says so in /readyz)."""

from __future__ import annotations

from services.runtime.bus import Stage
from services.runtime.forward import build_forwarder
from services.runtime.settings import TOPIC_SENTIMENT, TOPIC_ENRICHED, Settings


def build(settings: Settings) -> Stage:
    return build_forwarder(
        "recommend", settings, TOPIC_SENTIMENT, TOPIC_ENRICHED, note="passthrough: no recommender wired yet"
    )
