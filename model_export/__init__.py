"""Export a trained model's `encode_user` and `score` to ONNX, and prove parity with PyTorch."""
