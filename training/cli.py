"""The command line's plumbing, shared by the scripts: config checks that report ``group.key=value`` as a
``ConfigError``, the device and thread choice, building the envs, buffer, agent and runner from a composed
config (the only place where config turns into objects), ``train(cfg) -> dict``, and what resuming a run
needs (its saved config, the overrides it accepts).

``scripts/train.py`` wraps ``run(cfg)`` in ``@hydra.main``; tests and sweeps call ``train(cfg)`` directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from agents.precision import PrecisionChoice, choose_precision
from envs import EnvInfo, EpisodeTerminated, env_info, env_kwargs, make_env, make_vector_env
from her import validation
from training import checkpoint, rundir, sweep
from training.checkpoint import Checkpointer, CheckpointError, DivergenceError, RunInfo, WriteError
from training.distributed import CollectiveFailed, Distributed, RanksOutOfSync, launched_by_torchrun, rank_seed
from training.metrics import MetricsLogger
from training.rundir import RunDirError
from training.runner import Runner
from training.signals import GracefulStop

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
"""The Hydra configs of the scripts (``configs/`` beside this package)."""
# What a resumed run may change; everything else comes from the config saved in its checkpoint.
RESUME_OVERRIDES = (
    "runner.epochs",
    "progress",
    "torch_threads",
    "device",
    "checkpoint.every",
    "checkpoint.save_buffer",
)

# Options every run shows in TensorBoard's HParams view, besides the overrides its command line gave.
KEY_HPARAMS = (
    "env.id",
    "agent._target_",
    "seed",
    "buffer.batch_size",
    "agent.lr_actor",
    "agent.lr_critic",
    "agent.gamma",
    "agent.polyak",
    "agent.hidden",
    "buffer.strategy",
    "buffer.replay_k",
    "runner.epochs",
    "runner.cycles_per_epoch",
    "runner.episodes_per_cycle",
    "runner.updates_per_cycle",
    "env.num_envs",
    "device",
    "precision_probe.chosen",
    "precision_probe.fp32_updates_per_s",
    "precision_probe.bf16_updates_per_s",
)

# configs/hydra/default.yaml: a resumed run writes into its own dir; a new run (and a sweep) into a dir made for it
# alone (`new_dir`: `path`, or `path_2`, ... when taken). Cached: Hydra resolves the dir once per config.
OmegaConf.register_new_resolver(
    "run_dir",
    lambda resume, new: str(resume) if resume is not None else str(rundir.new_dir(new)),
    use_cache=True,
    replace=True,
)
OmegaConf.register_new_resolver("new_dir", lambda path: str(rundir.new_dir(path)), use_cache=True, replace=True)


class ConfigError(Exception):
    """A bad option, reported as ``group.key=value`` without a traceback."""


def _build(group: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; an ``OptionError`` becomes a ``ConfigError`` naming ``group.option``."""
    try:
        return fn(*args, **kwargs)
    except validation.OptionError as err:
        key = f"{group}.{err.name}" if group else err.name
        raise ConfigError(f"{key}={err.value!r} is invalid: {err.problem}") from None


def check_options(group: str, node: DictConfig) -> None:
    """Refuse keys of a ``_target_`` group that its target does not take, e.g. ``+agent.policy_delay=2`` with
    ``agent=ddpg`` (without the ``+``, Hydra refuses a key the group's yaml lacks before we get here)."""
    target = node._target_
    allowed = validation.keyword_options(get_object(target))
    unknown = [str(k) for k in node if not str(k).startswith("_") and allowed is not None and k not in allowed]
    if unknown:
        options = ", ".join(sorted(k for k in node if not str(k).startswith("_") and k not in unknown))
        raise ConfigError(f"{group}.{unknown[0]} is not an option of {target} (its options: {options})")


def resolve_device(device: str) -> torch.device:
    validation.choice("device", device, ["cpu", "cuda", "auto"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device (use device=cpu or device=auto)")
    return torch.device(device)


def torch_threads(requested: int | None, num_envs: int, vectorization: str, processes: int = 1) -> int:
    """Threads for torch: ``requested``, or (``None``) this process's share of the cores (``processes``
    training processes on this machine) less its async env workers.

    Oversubscribing a small CPU (torch threads + env worker processes > cores) makes torch many times slower.
    """
    if requested is not None:
        return _build("", validation.positive_int, "torch_threads", requested)
    workers = num_envs if vectorization == "async" else 0
    return max(1, (os.cpu_count() or 1) // processes - workers)


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / checkpoint.CHECKPOINT_DIR / checkpoint.LAST


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The config saved in ``run_dir``'s last checkpoint, with ``resume=run_dir`` and ``overrides``
    (``key=value``, keys from ``RESUME_OVERRIDES`` only)."""
    if not Path(run_dir).is_dir():
        raise ConfigError(f"resume={run_dir}: no such run dir")
    saved = checkpoint.load_resumable(run_dir).content
    for override in overrides:
        key = override.split("=", 1)[0]
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                f"{override}: a resumed run keeps its saved config; only {', '.join(RESUME_OVERRIDES)} may change"
            )
    cfg = OmegaConf.create(saved["config"])
    cfg.merge_with_dotlist(list(overrides))
    cfg.resume = str(run_dir)
    return cfg


def env_options(cfg: DictConfig) -> dict[str, Any]:
    """``env.kwargs`` as a plain dict of ``gym.make`` keyword arguments (none when the config has no such key)."""
    kwargs = cfg.env.get("kwargs")
    if OmegaConf.is_config(kwargs):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    return _build("env", env_kwargs, kwargs)


def run_info(cfg: DictConfig, info: Any) -> RunInfo:
    """What checkpoints record besides the states: env sizes, how to rebuild the agent, the resolved config."""
    agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
    assert isinstance(agent_cfg, dict)
    kwargs = {k: v for k, v in agent_cfg.items() if k not in ("_target_", "_partial_")}
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    env = checkpoint.env_record(cfg.env.id, info, env_options(cfg))
    return RunInfo(env, str(agent_cfg["_target_"]), kwargs, config)


_ABSENT = object()


def hparam_value(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard's HParams view holds it: a bool, number or string (lists and dicts as
    JSON, ``None`` as ``null``)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def hparams(cfg: DictConfig, overrides: Sequence[str] = (), world_size: int = 1) -> dict[str, bool | int | float | str]:
    """What a run shows in TensorBoard's HParams view: ``KEY_HPARAMS``, ``world_size`` and each command-line
    override (``key=value``; Hydra's own ``hydra...`` ones aside) with its resolved value. A config group's
    override (``env=PointReach``, ``experiment=fetch_push``) shows the option chosen."""
    values = {key: hparam_value(OmegaConf.select(cfg, key)) for key in KEY_HPARAMS}
    values["world_size"] = world_size
    for override in overrides:
        key, _, literal = override.lstrip("+").partition("=")
        if key.startswith(("~", "hydra")) or "/" in key:
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        group_choice = value is _ABSENT or (isinstance(value, DictConfig) and not literal.startswith("{"))
        values[key] = literal if group_choice else hparam_value(value)
    return values


BY_PRECISION_GROUPS = ("buffer", "runner")
"""The config groups whose options ``by_precision`` may set (built after the precision is chosen)."""


def precision_options(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``cfg.by_precision`` checked: ``{fp32|bf16: {"buffer.key" or "runner.key": value}}`` for existing keys."""
    node = cfg.get("by_precision") or {}
    table = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(table, dict):
        raise ConfigError(f"by_precision={table!r} is invalid: expected a mapping of fp32/bf16 to options")
    for precision, options in table.items():
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"by_precision.{precision} is invalid: expected fp32 or bf16")
        if not isinstance(options, dict):
            raise ConfigError(f"by_precision.{precision}={options!r} is invalid: expected a mapping of options")
        for key in options:
            group = str(key).split(".", 1)[0]
            if group not in BY_PRECISION_GROUPS or OmegaConf.select(cfg, str(key), default=_ABSENT) is _ABSENT:
                raise ConfigError(
                    f"by_precision.{precision}: {key} is not an option it can set "
                    f"(an existing option of {' or '.join(BY_PRECISION_GROUPS)})"
                )
    return table


def choose_run_precision(cfg: DictConfig, agent: Any, batch_size: int, distributed: Distributed) -> PrecisionChoice:
    """Resolve ``agent.precision`` (``auto``: by a probe of ``agent``'s update at ``batch_size``), set it on the
    agent, apply the chosen precision's ``by_precision`` options to ``cfg``, record the choice in
    ``cfg.precision_probe`` (saved with the run, shown in HParams) and print it (rank 0). Ranks train in one
    precision: bf16 only where every rank chose it."""
    options = precision_options(cfg)
    # Only a resumed run's saved choice counts (its config is the saved one), never a value given to a new run.
    previous = cfg.get("precision_probe") if cfg.get("resume") is not None else None
    if OmegaConf.is_config(previous):
        previous = OmegaConf.to_container(previous, resolve=True)
    choice = _build("agent", choose_precision, agent.precision, agent, batch_size, previous=previous)
    (someone_fp32,) = distributed.any_rank(choice.chosen != "bf16")
    if someone_fp32 and choice.chosen == "bf16":
        choice = dataclasses.replace(choice, chosen="fp32")
    agent.precision = choice.chosen
    for key, value in options.get(choice.chosen, {}).items():
        OmegaConf.update(cfg, key, value)
    with open_dict(cfg):
        cfg.precision_probe = choice.record()
    if distributed.is_main:
        print(choice.describe(), flush=True)
        if (warning := choice.warning()) is not None:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    return choice


def build_runner(
    cfg: DictConfig, run_dir: Path | None, resume_step: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Runner, EnvInfo]:
    """Envs, buffer, agent and runner from ``cfg`` (also sets torch threads and the torch seed).

    Metrics go to ``run_dir`` (on rank 0 only; ``None``: nowhere), continuing after ``resume_step`` (the env steps
    of all ranks of the last epoch logged before the checkpoint resumed from); a new run's TensorBoard gets its
    hparams (``overrides``: the command line's) and its config as text."""
    seed = _build("", validation.non_negative_int, "seed", cfg.seed)
    distributed = _build("distributed", instantiate(cfg.distributed), _build("", resolve_device, cfg.device))
    device = distributed.device  # under torchrun with cuda: this rank's GPU
    torch.set_num_threads(
        torch_threads(cfg.torch_threads, cfg.env.num_envs, cfg.env.vectorization, distributed.local_world_size)
    )
    # NumPy's BLAS does only the small matmuls of acting (agents.acting): its extra threads slow those ~3x
    # at batch 8 while torch's threads are busy.
    threadpool_limits(1, user_api="blas")
    torch.manual_seed(seed)  # network initialization (rank 0's is copied to the other ranks)

    check_options("agent", cfg.agent)
    env_cfg, kwargs = cfg.env, env_options(cfg)
    train_env = _build(
        "env",
        make_vector_env,
        env_cfg.id,
        env_cfg.num_envs,
        env_cfg.vectorization,
        kwargs,
        object_in_gripper=env_cfg.get("object_in_gripper", 0.0),  # training episodes only, never the eval env's
    )
    eval_env = make_vector_env(env_cfg.id, env_cfg.num_envs, env_cfg.vectorization, kwargs)
    # Sizes and the batched reward function come from a local instance: a sync env's own first env, else a
    # new one (async envs live in their workers). Loading a Fetch model takes ~0.2 s of start-up.
    local = train_env.envs[0] if isinstance(train_env, gym.vector.SyncVectorEnv) else make_env(env_cfg.id, **kwargs)
    info = env_info(local)

    agent = _build(
        "agent", instantiate(cfg.agent), info.obs_dim, info.goal_dim, info.action_dim, info.action_max, device=device
    )
    # The precision is chosen before the buffer and runner are built: by_precision may set their options.
    choose_run_precision(cfg, agent, _build("buffer", validation.positive_int, "batch_size", cfg.buffer.batch_size),
                         distributed)  # fmt: skip
    buffer = _build(
        "buffer",
        instantiate(cfg.buffer),
        horizon=info.horizon,
        obs_dim=info.obs_dim,
        goal_dim=info.goal_dim,
        action_dim=info.action_dim,
        reward_fn=info.compute_reward,
        gamma=agent.gamma,
    )
    distributed.attach(agent)
    # Only rank 0 writes files and shows progress; every rank trains on its own envs and buffer.
    writes = run_dir is not None and distributed.is_main
    logger = None
    if writes:
        logger = MetricsLogger(
            run_dir,
            bool(cfg.logger.tensorboard),
            resume_step=resume_step,
            hparams=hparams(cfg, overrides, distributed.world_size),
            config_text=OmegaConf.to_yaml(cfg, resolve=True),
        )
    runner = _build(
        "runner",
        instantiate(cfg.runner),
        agent,
        buffer,
        train_env,
        eval_env,
        info.horizon,
        seed=rank_seed(seed, distributed.rank),
        device=device,
        logger=logger,
        progress=bool(cfg.progress) and distributed.is_main,
        distributed=distributed,
    )
    return runner, info


def train(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Build everything from ``cfg``, train (continuing the run ``cfg.resume`` when set), save the policy,
    and return the last epoch's metrics plus ``stopped`` (true after Ctrl-C/SIGTERM).

    The run holds ``run_dir`` while it trains (``own_run_dir``): a dir another process writes, or a new run's dir
    that holds a run already, raises ``RunDirError``. ``overrides``: the command line's ``key=value`` overrides,
    shown with the key options in TensorBoard's HParams view. ``on_start``: called once every check has passed,
    the checkpoint resumed from is loaded and training is about to begin."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    with own_run_dir(run_dir, cfg.resume):
        return _train(cfg, run_dir, overrides, on_start)


def own_run_dir(run_dir: str | Path, resume: str | None) -> AbstractContextManager[None]:
    """Hold ``run_dir`` for this process (``rundir.hold``) on rank 0; ranks > 0 write no run dir. A resume must
    write into the dir it continues."""
    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    if resume is not None and Path(resume).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"resume={resume}: {resume_elsewhere(resume, run_dir)}")
    return rundir.hold(run_dir, new_run=resume is None)


def resume_elsewhere(resume: str | Path, run_dir: str | Path) -> str:
    return (
        f"a resume continues the run in {resume} and writes there, but the run dir is {run_dir}: that would split "
        "the run in two. Leave hydra.run.dir out when resuming (to branch off: copy the run dir, resume the copy)"
    )


def _train(
    cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str], on_start: Callable[[], None] | None
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
            checkpointer = _build(
                "checkpoint", Checkpointer, run_dir, info_record, cfg.checkpoint.every, cfg.checkpoint.save_buffer
            )
            runner.epoch_end_hooks.append(checkpointer.on_epoch_end)
        stop = GracefulStop()
        runner.stop_requested = stop
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


def start_or_resume(runner: Runner, checkpointer: Checkpointer | None, path: Path | None, saved: dict | None) -> None:
    """Load the checkpoint ``saved`` (read from ``path``) into ``runner``, or, for a new run, write its
    first checkpoint so that it can be resumed from its first cycle on. ``checkpointer`` is ``None`` on
    ranks > 0, which load the same checkpoint but write none."""
    if path is None or saved is None:
        if checkpointer is not None:
            checkpointer.save_last(runner)
        return
    best = checkpoint.restore(path, saved, runner)
    if checkpointer is not None:
        checkpointer.best_success = best
    if saved["training"]["buffer"] is None:
        print(f"note: {path} holds no replay buffer (checkpoint.save_buffer=false): it starts empty", file=sys.stderr)


def other_rank_overrides(environ: dict[str, str]) -> list[str]:
    """Hydra overrides that send the Hydra files of torchrun ranks > 0 to a scratch dir, so that a job writes one
    run dir (rank 0's). Appended after the user's overrides, they win over a ``hydra.run.dir=`` given there."""
    rank = int(environ.get("RANK", "0"))
    if rank == 0:
        return []
    scratch = Path(tempfile.gettempdir()) / f"her-fetch-{environ.get('TORCHELASTIC_RUN_ID', 'job')}" / f"rank{rank}"
    return [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}", "hydra.output_subdir=null"]


def check_resume_argument(argv: Sequence[str]) -> None:
    """Exit with an error (status 2) if ``resume=`` is given but cannot resume, before Hydra makes or writes
    anything: an empty value, a dir with no checkpoint, one that a live process writes, options a resumed run
    cannot change, or ``hydra.run.dir`` elsewhere."""
    resumes = [arg for arg in argv if arg.startswith("resume=")]
    if not resumes or resumes[-1] == "resume=null":
        return
    arg = resumes[-1]
    problem = resume_problem(arg.split("=", 1)[1], [a for a in argv if not a.startswith("resume=")])
    if problem is not None:
        print(f"error: {arg}: {problem}", file=sys.stderr)
        sys.exit(2)


def resume_problem(value: str, others: Sequence[str]) -> str | None:
    """Why ``resume=<value>`` with the other command-line arguments ``others`` cannot resume (``None``: it may)."""
    if not value:
        return "resume needs the run dir to continue, e.g. resume=runs/<env>/<time> (resume=null: a new run)"
    run_dir = Path(value)
    if not run_dir.is_dir():
        return "no such run dir"
    if not checkpoint.has_resumable(run_dir):
        return f"no checkpoint {checkpoint_path(run_dir)} (the run ended before its first one)"
    for arg in others:
        key, has_value, option = arg.lstrip("+~").partition("=")
        if key == "hydra.run.dir" and Path(option).resolve() != run_dir.resolve():
            return resume_elsewhere(value, option)
        if arg.startswith("-") or not has_value or key.startswith(("hydra.", "hydra/")):
            continue  # flags, and Hydra's own settings (launcher, logging)
        if key not in RESUME_OVERRIDES:
            return f"{arg}: a resumed run keeps its saved config; only {', '.join(RESUME_OVERRIDES)} may change"
    if int(os.environ.get("RANK", "0")) == 0:  # (ranks > 0 write nothing there; rank 0 may hold the dir already)
        try:
            rundir.check_not_busy(run_dir)
        except RunDirError as err:
            return str(err)
    return None


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


def run(cfg: DictConfig) -> float:
    """What ``python scripts/train.py`` does with its composed config: hold the run dir, train (or resume), print
    how it ended, exit 2 on a bad option or a run dir it may not write, 1 on a failure during training and 130 on
    a second Ctrl-C; returns the value a sweep optimizes. A sweep job that fails is recorded for the sweep's
    summary (``training.sweep``) and returns NaN, so that the sweep goes on."""
    hydra = HydraConfig.get()
    run_dir = hydra.runtime.output_dir
    multirun = hydra.mode == RunMode.MULTIRUN
    try:
        if launched_by_torchrun() and multirun:
            raise ConfigError("torchrun runs one training on several ranks: start sweeps (-m) without torchrun")
        overrides = list(hydra.overrides.task)
        task_cfg, resume = cfg, cfg.resume is not None
        with own_run_dir(run_dir, cfg.resume):
            if resume:
                overrides = [o for o in overrides if not o.startswith("resume=")]
                cfg = resume_config(cfg.resume, overrides)
            else:
                save_hydra_files(run_dir, task_cfg, resume=False)
            # Once built, a new run's config.yaml is written again: the precision chosen, with what by_precision set.
            on_start = lambda: save_hydra_files(run_dir, task_cfg, resume=resume)  # noqa: E731
            metrics = train(cfg, run_dir, overrides, on_start)
    except (ConfigError, CheckpointError, EpisodeTerminated, RunDirError) as err:
        return failed(err, 2, multirun)
    except (DivergenceError, WriteError, CollectiveFailed, RanksOutOfSync) as err:
        # Training began and failed; the checkpoints hold the state of before (none is written after the failure).
        return failed(err, 1, multirun)
    except KeyboardInterrupt:  # a second Ctrl-C while training (the first asks to stop after the cycle)
        interrupted(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 reports
        return float(metrics.get("eval_success_rate", float("nan")))
    if metrics["stopped"]:
        print(f"stopped; checkpoint saved. Resume with: python scripts/train.py resume={shlex.quote(run_dir)}")
        return float(metrics.get("eval_success_rate", float("nan")))
    print(
        f"done: epoch {metrics['epoch']} env_steps {metrics['env_steps']} "
        f"eval_success_rate {metrics['eval_success_rate']:.3f} wall {metrics['wall_s']:.1f}s -> {run_dir}"
    )
    return float(metrics["eval_success_rate"])


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
