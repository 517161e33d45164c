"""Checks for exercises/03_rnnlm.ipynb (written with the chapter)."""

__all__: list[str] = []
