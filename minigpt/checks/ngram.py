"""Checks for exercises/01_ngram.ipynb (written with the chapter)."""

__all__: list[str] = []
