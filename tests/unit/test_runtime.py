from __future__ import annotations

import pytest

from kefu.v1.events_pb2 import Envelope
from services.runtime import envelope as codec
from services.runtime.settings import SettingsError, load_settings


def test_envelope_roundtrip_keeps_chinese_readable() -> None:
    env = Envelope(message_id="m1", conversation_id="c1", text="你好")
    raw = codec.encode(env)
    assert "你好".encode() in raw
    assert codec.decode(raw) == env


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert codec.decode(b'{"messageId": "m1", "newField": 1}').message_id == "m1"


def test_settings_defaults_and_validation() -> None:
    s = load_settings({})
    assert s.kafka_bootstrap == "127.0.0.1:19092" and s.max_text_chars == 4000
    with pytest.raises(SettingsError, match="KEFU_TOPIC_PARTITIONS"):
        load_settings({"KEFU_TOPIC_PARTITIONS": "many"})
    with pytest.raises(SettingsError, match="KEFU_KAFKA_SASL_MECHANISM"):
        load_settings({"KEFU_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    with pytest.raises(SettingsError, match="KEFU_KAFKA_BOOTSTRAP"):
        load_settings({"KEFU_KAFKA_BOOTSTRAP": "localhost"})
    assert s.inference_threads == 1
    assert load_settings({"KEFU_INFERENCE_THREADS": "2"}).inference_threads == 2
    with pytest.raises(SettingsError, match="KEFU_INFERENCE_THREADS"):
        load_settings({"KEFU_INFERENCE_THREADS": "0"})


def test_a_service_sets_the_inference_threads_of_the_sessions_it_creates() -> None:
    from services.models import encoder

    before = encoder._process_threads
    try:
        encoder.set_default_threads(1)
        assert encoder.default_threads() == 1
        assert encoder.session_options(encoder.default_threads()).intra_op_num_threads == 1
        with pytest.raises(ValueError, match="threads must be >= 1"):
            encoder.set_default_threads(0)
    finally:
        encoder._process_threads = before


def test_freeze_heap_exempts_the_live_objects_from_full_collections() -> None:
    import gc

    from services.runtime.bus import freeze_heap

    try:
        freeze_heap()
        assert gc.get_freeze_count() > 1000  # at least the imported modules' objects
    finally:
        gc.unfreeze()


def test_readiness_can_leave_out_a_check_that_waits_for_the_others() -> None:
    from services.runtime.bus import Health

    health = Health("nlu")
    health.add_check("models", lambda: (True, "loaded"))
    health.add_check("gc", lambda: (False, "waiting for the other checks"))
    ok, details = health.readiness()
    assert not ok and details["gc"] == {"ok": False, "detail": "waiting for the other checks"}
    ok, details = health.readiness(skip=("gc",))
    assert ok and "gc" not in details and details["models"]["ok"]
