"""Layer 2, data: text and the numbers made from it. Named corpora (offline first) and their
splits, batches of token windows, tokenizers (character, word, byte-level BPE, OpenAI's
encodings offline) and the synthetic task data of the chapters. Imports only core."""
