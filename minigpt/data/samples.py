"""Two short texts with the same content, one in English and one in Chinese, written for the
course (original prose, no source), to compare how tokenizers treat the two languages.

    >>> from minigpt.data import samples
    >>> round(len(samples.CHINESE.encode("utf-8")) / len(samples.CHINESE), 1)  # a CJK character: 3 bytes
    2.9

The Chinese text says in Chinese what the English text says in English, paragraph by
paragraph, so the two carry the same information: the ratio of their token counts is the
extra cost of Chinese in a vocabulary. ``SAMPLES`` maps the language name to its text.
"""

from __future__ import annotations

__all__ = ["CHINESE", "ENGLISH", "SAMPLES"]

ENGLISH = """\
A language model does something simple: it reads a piece of text and guesses what the next word \
will be. The earliest models could only count, recording which word often followed which. Later, \
neural networks turned each word into a list of numbers, so that words with similar meanings lay \
close together. Then the Transformer let a model look at a whole passage at once; models grew \
larger and larger, and read more and more text.

But a model does not read text directly: it reads tokens. A token can be a character, a word, \
or part of a word. The rules that cut text into tokens are called a tokenizer. A tokenizer is \
learned from training data: byte sequences that appear often are merged into a new token. If the \
training data is mostly English, English words are cut into very few tokens, while each Chinese \
character may take up several.

This course starts from the simplest counting models and goes step by step to today's chatbots. \
Every chapter tests a claim from the articles with a small experiment. In this chapter we train a \
tokenizer with our own hands, and compare how many tokens the same meaning needs in Chinese and \
in English. If the same content needs more tokens, the model must spend more computation on it, \
and its context window holds less text.
"""

CHINESE = """\
语言模型做的事情其实很简单：读一段文字，然后猜下一个词是什么。最早的模型只会数数，记录哪个词常常跟在哪个词\
后面。后来，神经网络把每个词变成一串数字，让意思相近的词靠得更近。再后来，Transformer 让模型一次看完整段\
文字；模型越做越大，读过的文字也越来越多。

可是模型并不直接读文字，它读的是词元。词元可以是一个字、一个词，也可以是词的一部分。把文字切成词元的规则\
叫作分词器。分词器是从训练数据中学出来的：经常一起出现的字节会被合并成一个新的词元。如果训练数据大多是英文，\
英文单词就会被切成很少的几个词元，而一个汉字可能要占好几个词元。

这门课程从最简单的计数模型开始，一步一步走到今天的聊天机器人。每一章都用一个小实验来检验文章里的一个说法。\
在这一章里，我们亲手训练一个分词器，并且比较同样的意思在中文和英文里各需要多少个词元。同样的内容如果需要更多\
的词元，模型就要为它花更多的计算，上下文窗口里也只能放下更少的文字。
"""

SAMPLES: dict[str, str] = {"English": ENGLISH, "Chinese": CHINESE}
