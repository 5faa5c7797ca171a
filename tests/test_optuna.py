"""The project's Optuna sweeper (``hydra/sweeper=her_optuna``): the search space syntax, trials that report their
evaluations and are pruned, a study continued from its storage, and bad options refused before any trial."""

from __future__ import annotations

import pytest
import yaml
from helpers.point_runs import POINT_TINY
from helpers.train_cli import run_train

optuna = pytest.importorskip("optuna")

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.her_fetch_optuna_sweeper._study import override_value, search_space  # noqa: E402
from training.metrics import read_records  # noqa: E402
from training.optuna_trial import JOURNAL, PRUNED_AT  # noqa: E402

SEARCH = ("hparams_search=point_optuna", *POINT_TINY)


def test_the_search_space_is_written_in_hydras_sweep_syntax():
    params = {
        "agent.lr_actor": "tag(log, interval(0.0001, 0.01))",
        "agent.action_l2": "interval(0, 1)",
        "agent.polyak": "choice(0.8, 0.9, 0.95)",
        "buffer.batch_size": "range(64, 257, 64)",
        "agent.hidden": "[64, 64]",
    }
    space, fixed = search_space(params, ["runner.updates_per_cycle=range(1, 5)", "seed=3"])
    assert space == {
        "agent.lr_actor": FloatDistribution(0.0001, 0.01, log=True),  # interval() is always a float one
        "agent.action_l2": FloatDistribution(0.0, 1.0),
        "agent.polyak": CategoricalDistribution([0.8, 0.9, 0.95]),
        "buffer.batch_size": IntDistribution(64, 256, step=64),  # Hydra's range leaves out its stop
        "runner.updates_per_cycle": IntDistribution(1, 4),
    }
    assert fixed == ["agent.hidden=[64,64]", "seed=3"]
    assert [override_value(v) for v in (0.9, 64, True, None, "it's")] == ["0.9", "64", "true", "null", "'it\\'s'"]


def load(sweep_dir, study_name="point_ddpg", storage=None):
    return optuna.load_study(study_name=study_name, storage=storage or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL))))  # fmt: skip


@pytest.mark.slow
def test_a_pruned_trial_stops_early_keeps_its_run_dir_and_the_study_goes_on(tmp_path):
    # A goal within 10 of the point is reached at once, one within 0 never: every evaluation of a trial with the
    # threshold 0 is below the finished trial's with 10, and the median pruner stops it at its first.
    proc = run_train(
        *SEARCH, "runner.epochs=4", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=1", "~hydra.sweeper.params",
        "+env.kwargs.distance_threshold=choice(0.0, 10.0)", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trials = load(tmp_path).get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 4 and TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    for trial in trials:
        [job] = tmp_path.glob(f"{trial.number}_*")
        records = read_records(job / "metrics.jsonl")
        reported = [(r["env_steps"], r["eval_success_rate"]) for r in records]
        assert reported == list(trial.intermediate_values.items())  # every evaluation, at its env steps
        if trial.state == TrialState.PRUNED:
            assert trial.params == {"+env.kwargs.distance_threshold": 0.0}
            assert len(records) < 4 and trial.user_attrs[PRUNED_AT] == records[-1]["env_steps"]  # stopped early
            assert (job / "checkpoints" / "last.pt").is_file() and not (job / "policy.pt").exists()
            assert f"pruned: Optuna trial {trial.number} stopped after its evaluation at" in proc.stdout
        else:
            assert len(records) == 4 and trial.value == records[-1]["eval_success_rate"]
            assert (job / "policy.pt").is_file()
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"+env.kwargs.distance_threshold": 10.0} and results["best_value"] == 1.0
    counts = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED), "fail": 0}
    assert results["trials"] == counts


@pytest.mark.slow
def test_a_study_in_a_storage_is_continued_by_a_later_sweep(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for n, sweep_dir in enumerate((tmp_path / "first", tmp_path / "second"), 1):
        proc = run_train(
            *SEARCH, "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={storage}", f"hydra.sweeper.sampler.seed={n}",
            f"hydra.sweep.dir={sweep_dir}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    trials = load(tmp_path, storage=storage).get_trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE)]
    assert not (tmp_path / "second" / JOURNAL).exists()  # the study lives in the storage given
    results = yaml.safe_load((tmp_path / "second" / "optimization_results.yaml").read_text())
    assert results["trials"]["complete"] == 2 and results["best_value"] == max(t.value for t in trials)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra/sweeper/pruner=nope", "Could not find 'hydra/sweeper/pruner/nope'"),
        ("hydra.sweeper.pruner._target_=optuna.pruners.Nope",
         "error: hydra.sweeper.pruner._target_='optuna.pruners.Nope' is invalid: expected one of "),
        ("+hydra.sweeper.pruner.patience=3", "error: hydra.sweeper.pruner.patience is not an option of "
                                             "optuna.pruners.MedianPruner (its options: interval_steps, "),
        ("hydra.sweeper.n_jobs=0", "error: hydra.sweeper.n_jobs=0 is invalid: expected an integer > 0"),
        ("hydra.sweeper.direction=up", "error: hydra.sweeper.direction='up' is invalid: expected one of"),
    ],
)  # fmt: skip
def test_bad_sweeper_options_stop_the_sweep_before_its_first_trial(tmp_path, override, message):
    proc = run_train(*SEARCH, override, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("*/metrics.jsonl"))
    if override.startswith("hydra/sweeper/pruner"):
        assert "Available options in 'hydra/sweeper/pruner':\n\thyperband\n\tmedian\n\tnone" in proc.stderr
    else:
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
