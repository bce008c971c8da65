"""ingest: kefu.inbound.v1 → kefu.messages.v1 (validate, normalise, language, PII, de-duplicate)."""
