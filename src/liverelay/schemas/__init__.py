"""Pydantic models: one definition of every shape the node exchanges."""
