"""Persistence: the only package that touches SQLite."""

from core.store.store import Store

__all__ = ["Store"]
