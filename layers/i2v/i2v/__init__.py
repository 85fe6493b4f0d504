"""Shared runtime of the image-to-video pipeline (shipped as the Lambda layer)."""
