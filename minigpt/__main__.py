"""``python -m minigpt``: the command line (see ``minigpt.cli``)."""

import sys

from minigpt.cli import main

sys.exit(main())
