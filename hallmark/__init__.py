"""Hallmark's composition layer: settings, the `hallmark` CLI and the FastAPI app factory."""
