"""Checks for the chapter exercises on sft (filled in by the chapter's exercises)."""

__all__: list[str] = []
