"""Layer 6, world: the assistant world of chapters 08-12. Its questions and hidden annotator,
the recipe of every training stage, the cached stages (base, SFT, preferences, reward), and
the judge (generate, evaluate, win rate, KL) that the chapters measure with."""
