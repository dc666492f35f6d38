"""Training: point sampling, matching and losses (and, to come, optimiser, checkpoints, trainer, CLI).

Imports model, data and config; never inference.
"""
