"""Checks for the chapter exercises on reward (filled in by the chapter's exercises)."""

__all__: list[str] = []
