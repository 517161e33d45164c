"""Checks for the exercise notebooks (``exercises/NN_topic.ipynb``), one module per topic.

Each exercise cell asks the learner to write a function; the check cell after it calls
``checks.check_...(their_function)``. A check either prints what passed or raises an
``AssertionError`` that says what is wrong and how to fix it. An untouched stub raises
``NotImplementedError``, which a check turns into :class:`NotDoneYet` with a hint.

Write a new topic's checks in ``minigpt/checks/<topic>.py`` with the helpers in ``_base``,
and import them here.
"""

from minigpt.checks._base import NotDoneYet
from minigpt.checks.welcome import check_bits_per_byte, check_char_codec, check_training_compute

__all__ = ["NotDoneYet", "check_bits_per_byte", "check_char_codec", "check_training_compute"]
