"""The contract shared by offline jobs and the service: feature schema, manifest, ONNX graph and
tensor names, Redis keys, the publish gate, the A/B split and the /prerank answer.

Imports no torch, so the service can depend on it and stay small.
"""
