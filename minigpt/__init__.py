"""minigpt: the shared package of the course "from n-grams to ChatGPT".

Every notebook imports it. The top level holds the runtime's everyday names (profiles,
device, seeding); the rest lives in folders, one per layer, lowest first (``LAYERS``):

- ``minigpt.core``     runtime (profile, device, seed, cache folder), file plumbing, metrics
- ``minigpt.data``     corpora, splits and batches, tokenizers, BPE, task data
- ``minigpt.models``   n-grams, word2vec, RNNs, attention, the Transformer, GPT
- ``minigpt.train``    the Trainer, checkpoints, the model cache, several processes
- ``minigpt.methods``  what is done to models: scaling laws, SFT, reward models, PPO, DPO, ...
- ``minigpt.world``    the assistant world of chapters 08-12: questions, recipes, cached stages
- ``minigpt.course``   what the notebooks need around the lessons: widgets, the leaderboard,
                       exercise checks, notebook upkeep

A module imports only from its own layer or lower ones, and nothing imports in a circle
(``tests/test_repo.py`` builds the import graph from the code and checks both).
See docs/ARCHITECTURE.md for the module map and the flows.
"""

from minigpt.core.runtime import PROFILES, by_profile, cache_dir, device, profile, seed_everything

__version__ = "0.1.0"

LAYERS = ("core", "data", "models", "train", "methods", "world", "course")

__all__ = ["LAYERS", "PROFILES", "by_profile", "cache_dir", "device", "profile", "seed_everything"]
