"""Layer 7, course: what the notebooks need around the lessons. Widgets, the running
leaderboard, the milestones of the history, the environment report, the exercise checks, and
notebook upkeep (setup cell, Colab badge, hygiene, execution)."""
