"""The reply Faust agent (placeholder until the models land: forwards and says so in /readyz)."""

from __future__ import annotations

from services.runtime.bus import Stage
from services.runtime.forward import build_forwarder
from services.runtime.settings import TOPIC_ENRICHED, TOPIC_OUTBOUND, Settings


def build(settings: Settings) -> Stage:
    return build_forwarder(
        "reply", settings, TOPIC_ENRICHED, TOPIC_OUTBOUND, note="passthrough: no dialogue logic wired yet"
    )
