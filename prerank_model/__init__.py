"""The one home of model math: layers, models, and the `encode_user / encode_items / score` API."""
