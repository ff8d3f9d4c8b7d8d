"""Data: benchmark degradation (``degrade``: MATLAB-bicubic HR -> LR sets) and training datasets and transforms.

Modules are imported by their users (``from effsr.data.degrade import degrade_folder``); nothing is imported here.
"""
