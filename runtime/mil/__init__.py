"""Numpy interpreter for Core ML ML Programs (MIL); see runtime/__init__.py."""
from .model import MilModel
from .registry import covered

__all__ = ["MilModel", "covered"]
