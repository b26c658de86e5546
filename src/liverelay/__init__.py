"""liverelay: a live-streaming relay node with origin pull."""

__version__ = "0.1.0"
