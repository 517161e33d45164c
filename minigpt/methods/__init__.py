"""Layer 5, methods: what is done to a trained model or with it, one module per method. Scaling
laws and FLOP counting, probes, in-context learning, LoRA, SFT, reward models, PPO and DPO,
distillation and pruning, quantisation. Methods take plain values (models, token ids,
numbers), never the assistant world."""
