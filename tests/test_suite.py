"""Sweeps that continue: a new start of a sweep drops the stop request and the failures of the one before."""

from __future__ import annotations

import signal

from omegaconf import OmegaConf

from training.sweep import FAILURES, SweepSummary, record_failure
from training.sweep_stop import SweepStop, request_stop, stop_requested


def test_a_new_start_of_a_sweep_drops_the_failures_and_the_stop_request_of_the_one_before(tmp_path):
    record_failure(tmp_path, "ddpg_seed0", ["seed=0"], 2, "run dir ... is in use by ...")
    request_stop(tmp_path)
    assert stop_requested(tmp_path)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "resume": "auto"})
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    callbacks = SweepStop(), SweepSummary()
    for callback in callbacks:
        callback.on_multirun_start(config)
    try:
        assert not stop_requested(tmp_path) and not (tmp_path / FAILURES).exists()
        assert signal.getsignal(signal.SIGINT) not in handlers  # the sweep's own, while it runs
    finally:
        callbacks[0].on_multirun_end(config)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
