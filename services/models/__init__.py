"""Models shared by nlu, sentiment, recommend and reply: the encoder, heads and their registry.

Imports no stage. Runtime inference needs onnxruntime + tokenizers + numpy only.
"""
