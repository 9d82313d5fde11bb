"""Kontext Studio: chained, branching image edits with FLUX.1 Kontext through RunAPI."""

__version__ = "0.1.0"
