"""The run machinery: the training runner, checkpoints, metrics, Ctrl-C handling, data-parallel training over
``torch.distributed``, rendered episodes and video, generator states and host-to-device batches.

It sits above the replay core (``her``), ``envs`` and ``agents``, and below ``scripts/``: it takes the objects
that ``scripts/train.py`` builds and imports nothing from the scripts.
"""
