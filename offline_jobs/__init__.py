"""Offline jobs: data -> train -> evaluate -> export -> bundle -> publish."""
