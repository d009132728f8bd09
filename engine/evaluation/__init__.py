"""Evaluation: codec reconstruction and dependence now; the LM and the tagger later."""
