"""Checks for exercises/02_word2vec.ipynb (written with the chapter)."""

__all__: list[str] = []
