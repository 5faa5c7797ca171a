"""An Optuna trial seen from the run that is its job: each evaluation is reported to the trial as it comes, and
when the study's pruner says so the run stops (a graceful stop: its run dir keeps the checkpoint and metrics of
what it trained). The sweeper (``hydra_plugins.her_fetch_optuna_sweeper``) starts the job with the trial's number
in ``TRIAL_ENV``, and tells the study how the trial ended; what both sides need to find the study is here.

Optuna is imported only where a trial or a study is made: it is the optional ``sweeps`` extra.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from her import validation

if TYPE_CHECKING:
    import optuna

TRIAL_ENV = "HER_FETCH_OPTUNA_TRIAL"
"""The environment variable that holds a job's trial number (set through ``hydra.job.env_set``)."""
JOURNAL = "optuna_journal.log"
"""The study's journal file in the sweep dir when ``hydra.sweeper.storage`` is null."""
PRUNED_AT = "pruned_at_env_steps"
"""The user attribute a pruned trial's job sets: the env steps of the evaluation that pruned it."""


class StudyOptionError(ValueError):
    """A bad sweeper option, reported as ``hydra.sweeper.<key>=<value>``."""


def storage(url: str | None, sweep_dir: str | Path) -> Any:
    """The study's storage: ``url`` (an RDB URL such as ``sqlite:///optuna.db``, or a journal file path), or a
    journal file in ``sweep_dir`` (``None``). Never in memory: jobs in other processes reach the study through it."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url is not None and (not isinstance(url, str) or not url):
        raise StudyOptionError(f"hydra.sweeper.storage={url!r} is invalid: expected null, an RDB URL or a file path")
    if url is not None and "://" in url:
        return url
    path = Path(sweep_dir) / JOURNAL if url is None else Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def from_target(option: str, package: str, spec: Mapping[str, Any]) -> Any:
    """``cls(**kwargs)`` for ``spec = {"_target_": "<package>.<cls>", **kwargs}``, a class of Optuna's ``package``
    (``optuna.pruners``, ``optuna.samplers``); a bad class or keyword raises ``StudyOptionError`` naming
    ``hydra.sweeper.<option>``."""
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    target = spec.get("_target_")
    module_name, _, name = str(target).rpartition(".")
    module = importlib.import_module(package)
    available = sorted(n for n, c in vars(module).items() if inspect.isclass(c) and not n.startswith("Base"))
    if module_name != package or not inspect.isclass(getattr(module, name, None)):
        raise StudyOptionError(
            f"hydra.sweeper.{option}._target_={target!r} is invalid: expected one of "
            f"{', '.join(f'{package}.{n}' for n in available)}"
        )
    cls = getattr(module, name)
    allowed = validation.keyword_options(cls)
    unknown = [k for k in kwargs if allowed is not None and k not in allowed]
    if unknown:
        raise StudyOptionError(
            f"hydra.sweeper.{option}.{unknown[0]} is not an option of {target} "
            f"(its options: {', '.join(sorted(allowed))})"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise StudyOptionError(f"hydra.sweeper.{option}={kwargs} is invalid for {target}: {err}") from None


def pruner(spec: Mapping[str, Any]) -> Any:
    """The Optuna pruner ``spec`` names (``hydra.sweeper.pruner``)."""
    return from_target("pruner", "optuna.pruners", spec)


class TrialPruning:
    """An epoch-end hook of the runner that reports ``record[metric]`` at ``record["env_steps"]`` to ``trial`` (an
    ``optuna.trial.Trial``) whenever the epoch evaluated, and asks its pruner whether to stop; calling the object
    returns whether the trial was pruned (the runner polls it as a stop request). The last epoch reports and is
    never pruned: the trial then completes with that value."""

    def __init__(self, trial: optuna.trial.Trial, metric: str = "eval_success_rate") -> None:
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, runner: Any, record: Mapping[str, Any]) -> None:
        value = record.get(self.metric)
        if value is None:
            return
        step = int(record["env_steps"])
        self.trial.report(float(value), step)
        if runner.epoch < runner.epochs and self.trial.should_prune():
            self.pruned_at = step
            self.trial.set_user_attr(PRUNED_AT, step)

    def __call__(self) -> bool:
        return self.pruned_at is not None

    def describe(self) -> str:
        """One line saying where the trial stopped (once pruned)."""
        return f"pruned: Optuna trial {self.trial.number} stopped after its evaluation at {self.pruned_at} env steps"


def job_trial(
    sweeper: Mapping[str, Any], sweep_dir: str | Path, environ: Mapping[str, str] = os.environ
) -> optuna.trial.Trial | None:
    """The Optuna trial this job runs (``None`` outside an Optuna sweep): ``sweeper`` is the sweep's
    ``hydra.sweeper`` options as a plain dict, the trial number comes from ``environ[TRIAL_ENV]``."""
    number = environ.get(TRIAL_ENV)
    if number is None:
        return None
    import optuna

    study = optuna.load_study(
        study_name=sweeper["study_name"] or Path(sweep_dir).name,
        storage=storage(sweeper.get("storage"), sweep_dir),
        pruner=pruner(sweeper["pruner"]),
    )
    [frozen] = [t for t in study.get_trials(deepcopy=False) if t.number == int(number)]
    # Optuna's own optimize loop makes its Trial objects this way; the constructor is public, the id is not.
    return optuna.trial.Trial(study, frozen._trial_id)


def job_pruning(
    sweeper: Mapping[str, Any], sweep_dir: str | Path, environ: Mapping[str, str] = os.environ
) -> TrialPruning | None:
    """The pruning hook of this job's trial (``job_trial``); ``None`` outside an Optuna sweep."""
    trial = job_trial(sweeper, sweep_dir, environ)
    return None if trial is None else TrialPruning(trial)
