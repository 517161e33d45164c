"""Checks for the exercise notebooks (``exercises/NN_topic.ipynb``), one module per topic.

Each exercise cell asks the learner to write a function; the check cell after it calls
``checks.check_...(their_function)``. A check either prints what passed or raises an
``AssertionError`` that says what is wrong and how to fix it. An untouched stub raises
``NotImplementedError``, which a check turns into :class:`NotDoneYet` with a hint.

A topic's checks live in ``minigpt/checks/<topic>.py``, built with the helpers in ``_base``;
each module lists its checks in ``__all__`` and is star-imported here.
"""

from minigpt.checks._base import NotDoneYet as NotDoneYet  # re-exported for the notebooks
from minigpt.checks.attention import *  # noqa: F403
from minigpt.checks.gpt import *  # noqa: F403
from minigpt.checks.ngram import *  # noqa: F403
from minigpt.checks.quantize import *  # noqa: F403
from minigpt.checks.reward import *  # noqa: F403
from minigpt.checks.risks import *  # noqa: F403
from minigpt.checks.rlhf import *  # noqa: F403
from minigpt.checks.rnn import *  # noqa: F403
from minigpt.checks.scaling import *  # noqa: F403
from minigpt.checks.sft import *  # noqa: F403
from minigpt.checks.tokenization import *  # noqa: F403
from minigpt.checks.welcome import *  # noqa: F403
from minigpt.checks.word2vec import *  # noqa: F403
