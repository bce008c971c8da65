"""The shared runtime of every kefu service: settings, bus, envelope codec, observability, DLQ.

Nothing here knows about any stage.
"""
