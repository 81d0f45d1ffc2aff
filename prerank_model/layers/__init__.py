"""Reusable layers, grouped by kind; models only compose these."""
