"""What an epoch's record says, checked against the rollouts and updates that made it; what the normalizers see."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose_config

from training.build import build_runner

EPOCHS, CYCLES, EPISODES, UPDATES, EVAL_EPISODES, T = 2, 3, 2, 4, 4, 50


def test_epoch_records_count_and_average_what_the_epoch_did():
    cfg = compose_config(
        "env=PointReach", f"runner.epochs={EPOCHS}", f"runner.cycles_per_epoch={CYCLES}",
        f"runner.episodes_per_cycle={EPISODES}", f"runner.updates_per_cycle={UPDATES}",
        f"runner.eval_episodes={EVAL_EPISODES}", "buffer.batch_size=16", "torch_threads=1", "progress=false",
        "runner.overlap=false",  # collection and updates in turn: each cycle calls the scripted collect below
    )  # fmt: skip
    runner, _ = build_runner(cfg, run_dir=None)
    cycles, evaluations, stats, normalized, records = [], [], [], [], []
    collect, evaluate, update = runner.collect, runner.evaluate, runner.agent.update
    update_normalizers = runner.agent.update_normalizers

    def scripted_collect():
        rollout = collect()
        c = len(cycles)
        rollout.success = np.array([c % 2, 1.0])  # a success pattern that differs from cycle to cycle
        cycles.append(rollout)
        return rollout

    def scripted_evaluate():
        rollout = evaluate()
        rollout.success = np.array([1.0, 0.0, 0.0, 0.0]) if not evaluations else np.array([1.0, 1.0, 1.0, 0.0])
        evaluations.append(rollout)
        return rollout

    runner.collect, runner.evaluate = scripted_collect, scripted_evaluate
    runner.agent.update = lambda batch: stats.append(update(batch)) or stats[-1]
    runner.agent.update_normalizers = lambda obs, goal: normalized.append((obs, goal)) or update_normalizers(obs, goal)
    runner.epoch_end_hooks.append(lambda _, record: records.append(record))
    try:
        last = runner.run()
    finally:
        runner.close()

    assert last == records[-1] and len(records) == EPOCHS and len(cycles) == EPOCHS * CYCLES
    for e, record in enumerate(records):
        epoch_cycles = cycles[e * CYCLES : (e + 1) * CYCLES]
        epoch_stats = stats[e * CYCLES * UPDATES : (e + 1) * CYCLES * UPDATES]
        assert record["epoch"] == e
        assert record["env_steps"] == (e + 1) * CYCLES * EPISODES * T == record["buffer_transitions"]
        assert record["updates"] == (e + 1) * CYCLES * UPDATES
        assert record["train_success_rate"] == pytest.approx(np.mean([r.success for r in epoch_cycles]))
        assert record["eval_success_rate"] == pytest.approx(evaluations[e].success.mean())
        assert record["eval_mean_return"] == pytest.approx(evaluations[e].ret.mean())
        for key in ("critic_loss", "actor_loss", "q_mean"):
            assert record[key] == pytest.approx(np.mean([s[key] for s in epoch_stats])), key
    assert [r["train_success_rate"] for r in records] == pytest.approx([4 / 6, 5 / 6])
    assert [r["eval_success_rate"] for r in records] == [0.25, 0.75]
    assert len(evaluations[0].ret) == EVAL_EPISODES and np.all(evaluations[0].ret <= 0)

    # The normalizers see each cycle's transitions as the learner does: one horizon of samples per episode,
    # with relabeled goals (achieved goals of the episode) on a relabel_p fraction of them.
    assert len(normalized) == len(cycles)
    relabeled, rows = 0, 0
    for (obs, goal), rollout in zip(normalized, cycles):
        assert obs.shape == (EPISODES * T, 2) and goal.shape == (EPISODES * T, 2)
        real = {g.tobytes() for g in rollout.episodes["g"].reshape(-1, 2)}
        achieved = {g.tobytes() for g in rollout.episodes["ag"].reshape(-1, 2)}
        states = {o.tobytes() for o in rollout.episodes["obs"][:, :-1].reshape(-1, 2)}
        assert all(o.tobytes() in states for o in obs)
        new = [g.tobytes() not in real for g in goal]
        assert all(g.tobytes() in achieved for g, n in zip(goal, new) if n)
        relabeled, rows = relabeled + sum(new), rows + len(goal)
    p = runner.buffer.relabel_p
    assert p == pytest.approx(0.8) and relabeled / rows == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / rows))
