"""A trained model as a bundle: item heads and meta indices (`precompute`), ONNX graphs with
parity and the manifest (`assemble`), the fingerprint that decides reuse (`fingerprint`), the
atomic directory write (`writer`)."""
