"""Layer 1, core: what every other layer stands on. The runtime (profile, device, seed, cache
folder), file plumbing (atomic writes, sha256, recipe keys), and the metrics every chapter
reports. Imports nothing else from minigpt."""
