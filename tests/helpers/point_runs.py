"""The overrides of a PointReach run of a few seconds: two epochs of one cycle and two updates, one torch thread,
no TensorBoard, one precision (runs that tests compare with each other must train in one)."""

from __future__ import annotations

POINT_TINY = (
    "env=PointReach",
    "runner.epochs=2",
    "runner.cycles_per_epoch=1",
    "runner.updates_per_cycle=2",
    "runner.eval_episodes=2",
    "buffer.batch_size=16",
    "torch_threads=1",
    "progress=false",
    "logger.tensorboard=false",
    "agent.precision=fp32",
)
