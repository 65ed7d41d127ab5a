"""Pair preprocessing shared by the model input and the zero-shot scorer (SPEC §8)."""
