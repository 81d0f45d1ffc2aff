"""The online pre-ranking service: FastAPI over ONNX Runtime and numpy; imports no torch."""
