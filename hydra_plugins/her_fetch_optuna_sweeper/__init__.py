"""The project's Hydra sweeper on Optuna (``hydra/sweeper=her_optuna``): a study over the search space in
``hydra.sweeper.params``, trials launched in batches by Hydra's launcher, each trial's evaluations reported to it
while it trains, and a pruner that stops losing trials early (``training.optuna_trial`` is the trial's side).

``hydra_plugins`` is a namespace package that Hydra scans for plugins; only modules whose names do not start with
``_`` are imported by that scan, so the Optuna code lives in ``_study`` and is imported when a sweep starts.
"""
