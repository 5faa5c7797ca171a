"""The run entry of ``scripts/train.py``: ``run(cfg)`` holds the run dir, trains or resumes, reports how the run
ended and maps failures to exit statuses; ``train(cfg) -> dict`` does the training (tests and sweeps call it
directly); Hydra's record of each session is written into the run dir once the run holds it.

Building the objects from a config is ``training.build``; the checks of a resume, ``training.resume``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from envs import EpisodeTerminated
from training import checkpoint, optuna_trial, rundir, sweep, sweep_stop
from training.build import build_runner, run_info
from training.checkpoint import Checkpointer, CheckpointError, DivergenceError, WriteError
from training.distributed import CollectiveFailed, RanksOutOfSync, launched_by_torchrun
from training.options import ConfigError, checked
from training.resume import AUTO, Continuation, continuation, own_run_dir, resume_config, start_or_resume
from training.rundir import RunDirError
from training.signals import GracefulStop

_TIME_NAMED: set[str] = set()  # the run dirs default_run_dir named from the time for a run with resume=auto


def default_run_dir(resume: str | None, new: str) -> str:
    """``hydra.run.dir`` unless given: a resumed run's own dir, else ``new`` made for this run alone (``new_dir``:
    ``new``, or ``new_2``, ... when taken). ``resume=auto`` needs a dir named in advance: ``run`` refuses the
    one made here for it, which is named from the time."""
    if resume is not None and resume != AUTO:
        return str(resume)
    path = rundir.new_dir(new)
    if resume == AUTO:
        _TIME_NAMED.add(str(path.resolve()))
    return str(path)


def refuse_a_time_named_dir(run_dir: str) -> None:
    """Raise ``ConfigError`` if ``run_dir`` is the dir ``default_run_dir`` named from the time for a run with
    ``resume=auto`` (removing it: it is empty), which no later start would find again."""
    if str(Path(run_dir).resolve()) in _TIME_NAMED:
        with contextlib.suppress(OSError):  # (empty unless something else wrote there)
            Path(run_dir).rmdir()
        raise ConfigError(
            f"resume={AUTO} continues the run in a dir named in advance, and {run_dir} is named from the time: "
            "give the dir with hydra.run.dir=<dir> (a sweep's jobs: hydra.sweep.dir and hydra.sweep.subdir, as "
            "configs/suite/ sets them)"
        )


# configs/hydra/default.yaml: a resumed run writes into its own dir; a new run (and a sweep) into a dir made for it
# alone. Cached: Hydra resolves the dir once per config.
OmegaConf.register_new_resolver("run_dir", default_run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("new_dir", lambda path: str(rundir.new_dir(path)), use_cache=True, replace=True)


def train(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    on_start: Callable[[], None] | None = None,
    pruning: optuna_trial.TrialPruning | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Build everything from ``cfg``, train (continuing the run ``cfg.resume`` when set), save the policy,
    and return the last epoch's metrics plus ``stopped`` (true after Ctrl-C/SIGTERM). With ``resume=auto``,
    whatever ``run_dir`` holds is continued (``training.resume.continuation``): a finished run is kept, and its
    last metrics are returned without training.

    The run holds ``run_dir`` while it trains (``own_run_dir``): a dir another process writes, or a new run's dir
    that holds a run already, raises ``RunDirError``. ``overrides``: the command line's ``key=value`` overrides,
    shown with the key options in TensorBoard's HParams view. ``on_start``: called once every check has passed,
    the checkpoint resumed from is loaded and training is about to begin. ``pruning``: an Optuna trial's hook,
    which gets each evaluation and stops the run (as a Ctrl-C would) when the trial's pruner says so.
    ``stop_when``: polled with Ctrl-C's stop request after every cycle (a sweep's, ``training.sweep_stop``)."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    with own_run_dir(run_dir, cfg.resume):
        if cfg.resume == AUTO:
            plan = continuation(cfg, run_dir)
            if plan.final is not None:
                return {**plan.final, "stopped": False}
            cfg = plan.cfg
        return _train(cfg, run_dir, overrides, on_start, pruning, stop_when)


def _train(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: Sequence[str],
    on_start: Callable[[], None] | None,
    pruning: optuna_trial.TrialPruning | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    resumable = None if cfg.resume is None else checkpoint.load_resumable(cfg.resume)
    resume_path = None if resumable is None else resumable.path
    saved = None if resumable is None else resumable.content
    resume_step = None if saved is None else checkpoint.logged_env_steps(saved)
    done = 0 if saved is None else int(saved["counters"]["epoch"])
    if isinstance(cfg.runner.epochs, int) and cfg.runner.epochs < done:  # (other bad values: the Runner's check)
        raise ConfigError(
            f"runner.epochs={cfg.runner.epochs} is invalid: expected at least {done}, the epochs {resume_path} has done"
        )
    runner, info = build_runner(cfg, Path(run_dir), resume_step, overrides)
    if resumable is not None and resumable.warning is not None and runner.distributed.is_main:
        print(f"warning: {resumable.warning}", file=sys.stderr)
    try:
        info_record = run_info(cfg, info)
        if resume_path is not None:
            checkpoint.check_resumable(resume_path, saved, info_record)
        checkpointer = None
        if runner.distributed.is_main:
            checkpointer = checked(
                "checkpoint", Checkpointer, run_dir, info_record, cfg.checkpoint.every, cfg.checkpoint.save_buffer
            )
            runner.epoch_end_hooks.append(checkpointer.on_epoch_end)
        stop = GracefulStop()
        also = [s for s in (pruning, stop_when) if s is not None]  # other reasons to stop, polled with Ctrl-C's
        runner.stop_requested = (lambda: stop() or any(s() for s in also)) if also else stop
        if pruning is not None:
            runner.epoch_end_hooks.append(pruning.on_epoch_end)  # after the checkpoint's hook
        start_or_resume(runner, checkpointer, resume_path, saved)
        if on_start is not None:
            on_start()
        with stop:
            metrics = runner.run()
            if runner.stopped and runner.distributed.active:  # every rank: all stop after the same cycle
                cycle = runner.epoch * runner.cycles_per_epoch + runner.partial.cycles
                print(f"rank {runner.distributed.rank}: stopped after cycle {cycle}", file=sys.stderr, flush=True)
            if checkpointer is not None:
                if runner.stopped:
                    checkpointer.save_last(runner)
                else:
                    checkpointer.save_policy(runner, Path(run_dir) / "policy.pt")
        if runner.logger is not None and not runner.stopped:
            runner.logger.log_completed()
    finally:
        runner.close()
    return {**metrics, "stopped": runner.stopped}


def save_hydra_files(run_dir: str | Path, cfg: DictConfig, resume: bool) -> None:
    """Write Hydra's record of this session (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``) into the run
    dir, once this process holds it: ``.hydra/`` for a new run, ``.hydra/resume_<time>/`` for a resume (the
    run's own ``.hydra/`` stays that of its start). Hydra itself writes none (``hydra.output_subdir: null``):
    at job start it would overwrite the files of a run that another process holds. Ranks > 0 write nothing."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    hydra_dir = Path(run_dir) / ".hydra"
    if resume:
        hydra_dir = rundir.new_dir(hydra_dir / f"resume_{datetime.now():%Y-%m-%d_%H-%M-%S}")
    hydra = HydraConfig.instance().cfg
    files = {"config.yaml": cfg, "hydra.yaml": hydra, "overrides.yaml": HydraConfig.get().overrides.task}
    rundir.write_files(hydra_dir, {name: OmegaConf.to_yaml(node) for name, node in files.items()})


def other_rank_overrides(environ: dict[str, str]) -> list[str]:
    """Hydra overrides that send the Hydra files of torchrun ranks > 0 to a scratch dir, so that a job writes one
    run dir (rank 0's). Appended after the user's overrides, they win over a ``hydra.run.dir=`` given there."""
    rank = int(environ.get("RANK", "0"))
    if rank == 0:
        return []
    scratch = Path(tempfile.gettempdir()) / f"her-fetch-{environ.get('TORCHELASTIC_RUN_ID', 'job')}" / f"rank{rank}"
    return [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}", "hydra.output_subdir=null"]


def run(cfg: DictConfig) -> float:
    """What ``python scripts/train.py`` does with its composed config: hold the run dir, train (or resume, or with
    ``resume=auto`` continue what the dir holds: start, resume or keep), print how it ended, exit 2 on a bad option
    or a run dir it may not write, 1 on a failure during training and 130 on a second Ctrl-C; returns the value a
    sweep optimizes. A sweep job that fails is recorded for the sweep's summary (``training.sweep``) and returns
    NaN, so that the sweep goes on."""
    hydra = HydraConfig.get()
    run_dir = hydra.runtime.output_dir
    multirun = hydra.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra.sweep.dir) if multirun else None
    if sweep_dir is not None and sweep_stop.stop_requested(sweep_dir):
        print(f"not started: the sweep is stopping ({sweep_dir / sweep_stop.STOP_FILE}) -> {run_dir}", flush=True)
        return float("nan")
    try:
        if launched_by_torchrun() and multirun:
            raise ConfigError("torchrun runs one training on several ranks: start sweeps (-m) without torchrun")
        auto = cfg.resume == AUTO
        if auto:
            if launched_by_torchrun():
                raise ConfigError(f"resume={AUTO} is for one process: under torchrun, resume=<run dir> continues a run")
            refuse_a_time_named_dir(run_dir)
        overrides = [o for o in hydra.overrides.task if not o.startswith("resume=")]
        task_cfg = cfg
        sweeper = OmegaConf.to_container(hydra.sweeper, resolve=True) if multirun else {}
        pruning = optuna_trial.job_pruning(sweeper, hydra.sweep.dir) if multirun else None
        with own_run_dir(run_dir, cfg.resume):
            if auto:
                plan = continuation(cfg, run_dir)
                print(continued(plan, run_dir), flush=True)
                if plan.final is not None:
                    return float(plan.final["eval_success_rate"])
                cfg = plan.cfg
                if plan.action == "start":  # a new run's .hydra/config.yaml: the config it trains with
                    task_cfg = cfg
            elif cfg.resume is not None:
                cfg = resume_config(cfg.resume, overrides)
            resume = cfg.resume is not None
            if not resume:
                save_hydra_files(run_dir, task_cfg, resume=False)
            # Once built, a new run's config.yaml is written again, with the precision chosen (precision_probe).
            on_start = lambda: save_hydra_files(run_dir, task_cfg, resume=resume)  # noqa: E731
            stop_when = None if sweep_dir is None else lambda: sweep_stop.stop_requested(sweep_dir)
            metrics = train(cfg, run_dir, overrides, on_start, pruning, stop_when)
    except (ConfigError, CheckpointError, EpisodeTerminated, RunDirError) as err:
        return failed(err, 2, multirun)
    except (DivergenceError, WriteError, CollectiveFailed, RanksOutOfSync) as err:
        # Training began and failed; the checkpoints hold the state of before (none is written after the failure).
        return failed(err, 1, multirun)
    except KeyboardInterrupt:  # a second Ctrl-C while training (the first asks to stop after the cycle)
        interrupted(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 reports
        return float(metrics.get("eval_success_rate", float("nan")))
    if metrics["stopped"] and pruning is not None and pruning():
        print(f"{pruning.describe()}; checkpoint saved in {run_dir}")
        return float(metrics.get("eval_success_rate", float("nan")))
    if metrics["stopped"]:
        if sweep_dir is not None:  # stopped by Ctrl-C in the process that runs the sweep: no more jobs start
            sweep_stop.stop_here(sweep_dir, f"{Path(run_dir).name} stopped")
        again = f"the same command again (resume={AUTO}), or " if auto else ""
        print(f"stopped; checkpoint saved. Resume with: {again}python scripts/train.py resume={shlex.quote(run_dir)}")
        return float(metrics.get("eval_success_rate", float("nan")))
    print(
        f"done: epoch {metrics['epoch']} env_steps {metrics['env_steps']} "
        f"eval_success_rate {metrics['eval_success_rate']:.3f} wall {metrics['wall_s']:.1f}s -> {run_dir}"
    )
    return float(metrics["eval_success_rate"])


def continued(plan: Continuation, run_dir: str) -> str:
    """The line ``resume=auto`` prints on what it does with ``run_dir``."""
    if plan.action == "start":
        return f"resume={AUTO}: {run_dir} holds no run: starting one"
    if plan.action == "resume":
        return f"resume={AUTO}: resuming the run in {run_dir} after its epoch {plan.epochs_done}"
    final = plan.final or {}
    return (
        f"resume={AUTO}: kept the finished run in {run_dir}: epoch {final.get('epoch')} env_steps "
        f"{final.get('env_steps')} eval_success_rate {final.get('eval_success_rate'):.3f}"
    )


def failed(err: Exception, status: int, multirun: bool) -> float:
    """Report ``err``; exit with ``status``, or in a sweep record the job's failure for the sweep's summary and
    return NaN (the sweep goes on; it exits with the worst status of its jobs at the end)."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    if not multirun:
        sys.exit(status)
    hydra = HydraConfig.get()
    job = Path(hydra.runtime.output_dir)
    sweep.record_failure(Path(hydra.sweep.dir), job.name, list(hydra.overrides.task), status, str(err))
    return float("nan")


def interrupted(run_dir: str) -> NoReturn:
    """One line instead of a ``KeyboardInterrupt`` traceback, and exit status 130. The checkpoints are written
    atomically: the last complete one is whole."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C changes nothing now
    if checkpoint.has_resumable(run_dir):
        command = f"python scripts/train.py resume={shlex.quote(run_dir)}"
        where = f"the last complete checkpoint is kept. Resume with: {command}"
    else:
        where = "no checkpoint was written"
    print(f"\ninterrupted: stopped at once (Ctrl-C again); {where}", file=sys.stderr, flush=True)
    sys.exit(130)
