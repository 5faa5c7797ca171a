"""The sweep: an Optuna study asked for ``n_jobs`` trials at a time, each batch launched as Hydra jobs, each job
told back to the study as complete, pruned (its run stopped early, ``training.optuna_trial``) or failed.

The search space is written in Hydra's override syntax (``hydra.sweeper.params`` and sweep overrides on the
command line): ``choice(a, b)`` is categorical, ``interval(lo, hi)`` uniform over the reals (Hydra's interval is
a float one), ``tag(log, interval(lo, hi))`` log-uniform, ``range(start, stop, step)`` the grid Hydra's range
gives (``stop`` excluded; integers when its values are).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from her import validation
from training.optuna_trial import PRUNED_AT, TRIAL_ENV, StudyOptionError, from_target, pruner, storage

RESULTS = "optimization_results.yaml"
"""In the sweep dir: the best trial's parameters and value, and how many trials ended how."""
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class StudySettings:
    """The sweeper's options (``configs/hydra/sweeper/her_optuna.yaml``), checked."""

    direction: str
    study_name: str | None
    storage: str | None
    n_trials: int
    n_jobs: int
    params: dict[str, str]
    sampler: dict[str, Any]
    pruner: dict[str, Any]

    @classmethod
    def checked(cls, options: Mapping[str, Any]) -> StudySettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known - {"_target_", "_recursive_"})
        if unknown:
            raise StudyOptionError(
                f"hydra.sweeper.{unknown[0]} is not an option (its options: {', '.join(sorted(known))})"
            )
        try:
            direction = validation.choice("direction", options["direction"], DIRECTIONS)
            n_trials = validation.positive_int("n_trials", options["n_trials"])
            n_jobs = validation.positive_int("n_jobs", options["n_jobs"])
        except validation.OptionError as err:
            raise StudyOptionError(f"hydra.sweeper.{err.name}={err.value!r} is invalid: {err.problem}") from None
        name = options["study_name"]
        if name is not None and (not isinstance(name, str) or not name):
            raise StudyOptionError(f"hydra.sweeper.study_name={name!r} is invalid: expected null or a non-empty string")
        params = options.get("params") or {}
        if not isinstance(params, dict):
            raise StudyOptionError(f"hydra.sweeper.params={params!r} is invalid: expected a mapping of key: sweep")
        for key in ("sampler", "pruner"):
            if not isinstance(options.get(key), dict) or "_target_" not in options[key]:
                raise StudyOptionError(
                    f"hydra.sweeper.{key}={options.get(key)!r} is invalid: expected a _target_ class"
                )
        return cls(
            direction, options["study_name"], options["storage"], n_trials, n_jobs,
            {str(k): str(v) for k, v in params.items()}, dict(options["sampler"]), dict(options["pruner"]),
        )  # fmt: skip


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of a sweep override (module docstring)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        points = list(override.sweep_iterator())
        if not points:
            raise StudyOptionError(f"{override.input_line}: an empty range")
        if all(isinstance(x, int) for x in points):
            return IntDistribution(points[0], points[-1], step=int(value.step))
        return FloatDistribution(float(points[0]), float(points[-1]), step=float(value.step))
    if isinstance(value, IntervalSweep):
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    raise StudyOptionError(
        f"{override.input_line}: {type(value).__name__} is not a search space (choice, range, interval)"
    )


def search_space(params: Mapping[str, str], arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of ``params`` and the command line's sweep overrides, and the command line's other
    overrides (given to every trial as they are)."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(arguments))
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in overrides:
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    return space, fixed


def override_value(value: Any) -> str:
    """``value`` as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_state(frozen: optuna.trial.FrozenTrial, result: JobReturn) -> tuple[TrialState, float | None]:
    """How a job ended, for the study: pruned (its job set ``PRUNED_AT``), failed (an error: the job returned
    NaN), or complete with its value."""
    if result.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None
    if PRUNED_AT in frozen.user_attrs:
        return TrialState.PRUNED, None
    value = float(result.return_value)
    return (TrialState.FAIL, None) if math.isnan(value) else (TrialState.COMPLETE, value)


def write_results(study: optuna.Study, path: Path) -> dict[str, Any]:
    """The best complete trial's parameters and value, and the count of trials per state, into ``path``."""
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name.lower() in counts:
            counts[trial.state.name.lower()] += 1
    complete = counts["complete"] > 0
    results = {
        "name": "optuna",
        "study_name": study.study_name,
        "best_params": study.best_params if complete else {},
        "best_value": study.best_value if complete else None,
        "best_trial": study.best_trial.number if complete else None,
        "trials": counts,
    }
    path.write_text(yaml.safe_dump(results, sort_keys=False))
    return results


def run_study(sweeper: Any, settings: StudySettings, arguments: Sequence[str]) -> list[list[JobReturn]]:
    """Run ``settings.n_trials`` trials of the study (created, or continued from its storage)."""
    config = sweeper.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    space, fixed = search_space(settings.params, arguments)
    study = optuna.create_study(
        study_name=settings.study_name or sweep_dir.name,
        storage=storage(settings.storage, sweep_dir),
        sampler=from_target("sampler", "optuna.samplers", settings.sampler),
        pruner=pruner(settings.pruner),
        direction=settings.direction,
        load_if_exists=True,
    )
    returns: list[list[JobReturn]] = []
    job_idx, remaining = 0, settings.n_trials
    while remaining > 0:
        trials = [study.ask(space) for _ in range(min(settings.n_jobs, remaining))]
        batch = [
            [*fixed, *(f"{k}={override_value(v)}" for k, v in trial.params.items()),
             f"+hydra.job.env_set.{TRIAL_ENV}={trial.number}"]
            for trial in trials
        ]  # fmt: skip
        sweeper.validate_batch_is_legal(batch)
        results = list(sweeper.launcher.launch(batch, initial_job_idx=job_idx))
        frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial, result in zip(trials, results):
            state, value = trial_state(frozen[trial.number], result)
            study.tell(trial, value, state=state)
        for result in results:
            _ = result.return_value  # a job that raised (not a refused option: that returns NaN) ends the sweep
        job_idx, remaining = job_idx + len(batch), remaining - len(batch)
        returns.append(results)
    results_file = write_results(study, sweep_dir / RESULTS)
    print(f"optuna: study {study.study_name}: {results_file['trials']}; best value {results_file['best_value']} "
          f"with {results_file['best_params']}", flush=True)  # fmt: skip
    return returns


def sweep(sweeper: Any, arguments: Sequence[str]) -> list[list[JobReturn]]:
    """``Sweeper.sweep``: a bad option stops the sweep before any trial, with one line and exit status 2."""
    try:
        settings = StudySettings.checked(sweeper.options)
        return run_study(sweeper, settings, arguments)
    except StudyOptionError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
