"""Layer 4, train: the one training loop every neural chapter uses, the checkpoint file and its
safety, the one model cache, and training on several processes."""
