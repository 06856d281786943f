"""ONNX in and out: ``engine export`` (``engine.onnx.export``) and ``engine import``.

onnx and onnxruntime are optional (the ``onnx`` extra): nothing here imports them
at module level, so the engine runs without them and the verbs say how to install
them (``engine.onnx.common.require``).
"""
