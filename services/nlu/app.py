"""The nlu Faust agent (placeholder until the models land: forwards and says so in /readyz)."""

from __future__ import annotations

from services.runtime.bus import Stage
from services.runtime.forward import build_forwarder
from services.runtime.settings import TOPIC_MESSAGES, TOPIC_NLU, Settings


def build(settings: Settings) -> Stage:
    return build_forwarder(
        "nlu", settings, TOPIC_MESSAGES, TOPIC_NLU, note="passthrough: no intent model wired yet"
    )
