"""Layer 3, models: one module per model idea, each readable on its own. n-grams, word2vec,
RNN language models, attention and the Transformer variants, and GPT. Imports core and data."""
