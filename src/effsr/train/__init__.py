"""Training: recipes (stages as data), tasks and losses, the loop, checkpoints, EMA and torchrun DDP.

Modules are imported by their users (``from effsr.train.loop import train``); see docs/training.md.
"""
