"""Data sources, each turned into one `InteractionData`."""
