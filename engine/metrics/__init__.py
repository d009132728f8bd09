"""Evaluation metrics: how dependent the codebooks are, and how much of each codebook is used."""
