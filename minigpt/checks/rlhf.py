"""Checks for the chapter exercises on rlhf (filled in by the chapter's exercises)."""

__all__: list[str] = []
