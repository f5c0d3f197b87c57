"""Applying saved models to new images."""

from unetkit.inference.predictor import Predictor

__all__ = ["Predictor"]
