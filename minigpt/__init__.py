"""minigpt: the shared package of the course "from n-grams to ChatGPT".

Every notebook imports it. The top level holds the runtime (profiles, device, seeding); the
rest lives in modules named after what they hold:

- ``minigpt.data``        named corpora (offline first), splits, batches of token windows
- ``minigpt.tokenizers``  character, word and byte-level BPE tokenizers; OpenAI's encodings offline
- ``minigpt.metrics``     perplexity and bits per byte
- ``minigpt.train``       the one Trainer every neural chapter uses
- ``minigpt.gpt``         a small decoder-only Transformer and sampling
- ``minigpt.checks``      checks for the exercise notebooks

See docs/ARCHITECTURE.md for the module map and the direction of imports.
"""

from minigpt.runtime import PROFILES, by_profile, cache_dir, device, profile, seed_everything

__version__ = "0.1.0"

__all__ = ["PROFILES", "by_profile", "cache_dir", "device", "profile", "seed_everything"]
