"""The sentiment Faust agent (placeholder until the models land: forwards and says so in /readyz)."""

from __future__ import annotations

from services.runtime.bus import Stage
from services.runtime.forward import build_forwarder
from services.runtime.settings import TOPIC_NLU, TOPIC_SENTIMENT, Settings


def build(settings: Settings) -> Stage:
    return build_forwarder(
        "sentiment", settings, TOPIC_NLU, TOPIC_SENTIMENT, note="passthrough: no sentiment model wired yet"
    )
