"""From Wikipedia markup to plain prose: ``clean_wiki_markup`` removes templates, tables,
galleries, references and back matter (references, see also, ...) and keeps headings as plain
lines. ``minigpt.data.corpora`` builds the offline ``wiki`` corpus with it.
"""

from __future__ import annotations

import re

# Sections made of reference lists and links rather than prose.
_BACK_MATTER = {"references", "external links", "see also", "further reading", "notes",
                "bibliography", "footnotes", "sources", "citations", "notes and references"}


_HEADING = re.compile(r"^(={2,6})\s*(.*?)\s*\1$")


_INLINE_FIXES = [  # (pattern, replacement), applied in order to each article
    (re.compile(r"'{2,}"), ""),                               # ''italic'' and '''bold'''
    (re.compile(r"__[A-Z]+__"), ""),                          # __TOC__ and other magic words
    (re.compile(r"\|?\b\d+(?:x\d+)?px"), "\n"),               # image sizes: |220px, 217x217px
    (re.compile(r"\|(?:thumb|upright|left|right|center)\b"), ""),  # image options
    (re.compile(r"\(\s*(?:[;,]\s*)+"), "("),                  # "(; born 1947)" once IPA is gone
    (re.compile(r"[ ,;]+\)"), ")"),                           # "(Akhilleus, )"
    (re.compile(r"\(\s*\)"), ""),                             # "()" left by removed templates
    (re.compile(r"\(\s+"), "("),
    (re.compile(r"[ \t]+"), " "),                             # runs of spaces and tabs
    (re.compile(r" ([,;])"), r"\1"),                          # "the Greek , i.e." -> "Greek,"
]


def _drop_tables_and_galleries(markup: str) -> str:
    """Remove ``{| tables |}`` and ``<gallery>`` blocks from raw markup: filter_wiki would turn
    them into one table cell or file name a line."""
    markup = re.sub(r"<gallery.*?</gallery>", "", markup, flags=re.DOTALL | re.IGNORECASE)
    kept, depth = [], 0
    for line in markup.split("\n"):
        stripped = line.lstrip()
        depth += stripped.startswith("{|")
        if depth == 0:
            kept.append(line)
        if stripped.startswith("|}") and depth > 0:
            depth -= 1
    return "\n".join(kept)


def _clean_line(line: str) -> str | tuple[int, str]:
    """One line of filtered text -> plain text, ``""`` to drop, or ``(level, title)`` for a
    heading."""
    line = line.strip()
    if not re.search(r"\w", line) or re.search(r"\balt=", line):  # punctuation, image alt text
        return ""
    if match := _HEADING.match(line):
        return len(match.group(1)), match.group(2)
    line = re.sub(r"^[:;]+\s*", "", line)  # ":" indents quotations
    return re.sub(r"^[*#]+\s*", "* ", line)  # bullet and numbered lists become "* item"


def _drop_sections(items: list[str | tuple[int, str]]) -> list[str]:
    """Drop back-matter sections and headings with nothing under them; a heading becomes its
    title on a line of its own after a blank line."""
    kept: list[str | tuple[int, str]] = []
    skip_below = 0  # while > 0, we are inside a dropped section of that level
    for item in items:
        if isinstance(item, tuple):
            if skip_below and item[0] > skip_below:
                continue
            skip_below = item[0] if item[1].lower() in _BACK_MATTER else 0
        if not skip_below:
            kept.append(item)
    out: list[str] = []
    after_title = False
    for i, item in enumerate(kept):
        if isinstance(item, tuple):
            following = next((x for x in kept[i + 1:] if x != ""), None)
            if following is None or (isinstance(following, tuple) and following[0] <= item[0]):
                continue  # empty section
            out += ["", item[1]]
            after_title = True
        elif item or not after_title:  # no blank line right under a title
            out.append(item)
            after_title = False
    return out


def clean_wiki_markup(markup: str) -> str:
    """Raw MediaWiki markup of one article -> plain paragraphs (gensim's filter_wiki, then the
    cleanup above)."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(_drop_tables_and_galleries(markup)).replace("\xa0", " ")
    for pattern, replacement in _INLINE_FIXES:
        text = pattern.sub(replacement, text)
    lines = _drop_sections([_clean_line(line) for line in text.split("\n")])
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
