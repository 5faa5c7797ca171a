"""The Hydra plugin class; Hydra imports this module when it scans for plugins, so it imports nothing heavy."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=her_optuna`` (``configs/hydra/sweeper/her_optuna.yaml``): the options are those of
    ``_study.StudySettings``, checked when the sweep starts."""

    def __init__(self, **options: Any) -> None:
        self.options = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                        for k, v in options.items()}  # fmt: skip
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.her_fetch_optuna_sweeper import _study

        return _study.sweep(self, arguments)
