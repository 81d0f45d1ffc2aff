"""The contract shared by offline jobs and the service: feature schema, manifest, Redis keys.

Imports no torch, so the service can depend on it and stay small.
"""
