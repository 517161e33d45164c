"""Checks for the exercise notebooks (``exercises/NN_topic.ipynb``), one module per topic.

Each exercise cell asks the learner to write a function; the check cell after it calls
``checks.check_...(their_function)``. A check either prints what passed or raises an
``AssertionError`` that says what is wrong and how to fix it. An untouched stub raises
``NotImplementedError``, which a check turns into :class:`NotDoneYet` with a hint.

A topic's checks live in ``minigpt/course/checks/<topic>.py``, built with the helpers in ``_base``;
each module lists its checks in ``__all__`` and is star-imported here.
"""

from minigpt.course.checks._base import NotDoneYet as NotDoneYet  # re-exported for the notebooks
from minigpt.course.checks.attention import *
from minigpt.course.checks.attention_build import *
from minigpt.course.checks.gpt import *
from minigpt.course.checks.gpt_build import *
from minigpt.course.checks.ngram import *
from minigpt.course.checks.ngram_build import *
from minigpt.course.checks.quantize import *
from minigpt.course.checks.quantize_build import *
from minigpt.course.checks.reward import *
from minigpt.course.checks.reward_build import *
from minigpt.course.checks.risks import *
from minigpt.course.checks.risks_build import *
from minigpt.course.checks.rlhf import *
from minigpt.course.checks.rlhf_build import *
from minigpt.course.checks.rnn import *
from minigpt.course.checks.rnn_build import *
from minigpt.course.checks.scaling import *
from minigpt.course.checks.scaling_build import *
from minigpt.course.checks.sft import *
from minigpt.course.checks.sft_build import *
from minigpt.course.checks.tokenization import *
from minigpt.course.checks.tokenization_build import *
from minigpt.course.checks.welcome import *
from minigpt.course.checks.word2vec import *
from minigpt.course.checks.word2vec_build import *
