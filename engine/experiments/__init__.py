"""Experiments that train and compare several models end to end."""
