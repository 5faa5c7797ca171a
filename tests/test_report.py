"""scripts/report.py: tables and README figures from committed run data, and docs/results.md and README.md kept
in step with that data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import report as report_script

from training import report, report_readme, update_cost
from training.run_results import load_run, trailing_mean

ROOT = Path(__file__).resolve().parent.parent


TOY = "PointReach-v0"  # 2-d observations, goals and actions; no MuJoCo
TOY_CONFIG = "agent:\n  _target_: agents.DDPG\n  _partial_: true\n  hidden: [8]\nbuffer:\n  batch_size: 4\n"


def linear(n_in: int, n_out: int) -> int:
    """The FLOPs of one sample through ``Linear(n_in, n_out)``'s matrix product (or one of its two gradients)."""
    return 2 * n_in * n_out


# One DDPG update of TOY_CONFIG, by hand: inputs [o, g] of 4, actions of 2, one hidden layer of 8.
# Actor (4 -> 8 -> 2): forward as the target on s' and as the actor on s, weight gradients, and input gradients
# past its first layer (the normalized inputs carry none). Critic ([s, a] of 6 -> 8 -> 1): forward as the target
# on s', on (s, a) and on (s, pi); the critic loss's weight gradients and input gradients past its first layer;
# the actor loss's input gradients through every layer (pi carries a gradient), none of its weights (frozen).
TOY_FLOPS_PER_SAMPLE = 3 * linear(4, 8) + 4 * linear(8, 2) + 5 * linear(6, 8) + 6 * linear(8, 1)
TOY_FLOPS = 4 * TOY_FLOPS_PER_SAMPLE  # batch 4
UPDATES_PER_EPOCH = 1_000_000  # 0.00358 TFLOP an epoch


def write_run(data: Path, name: str, seed: int, success: list[float], steps_per_epoch: int = 1000) -> None:
    run = data / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\nenv:\n  id: {TOY}\n{TOY_CONFIG}")
    lines = [
        json.dumps(
            {
                "epoch": i,
                "env_steps": (i + 1) * steps_per_epoch,
                "updates": UPDATES_PER_EPOCH * (i + 1),
                "wall_s": 60.0 * (i + 1),
                "eval_success_rate": s,
            }
        )  # fmt: skip
        for i, s in enumerate(success)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def spec(data: Path, runs: list[str], curve: str | None = None) -> None:
    (data / "report.yaml").write_text(
        json.dumps(
            {
                "sections": {
                    "toy": {
                        "cpu": "a CPU",
                        "runs": runs,
                        "threshold": 0.5,
                        "milestones": [2000, 4000],
                        "window": 2,
                        "curve": curve,
                        "smooth": 1,
                    }
                }
            }
        )  # fmt: skip
    )


def test_trailing_mean_uses_fewer_values_at_the_start():
    np.testing.assert_allclose(trailing_mean(np.array([0.0, 1.0, 1.0, 0.0]), 2), [0.0, 0.5, 1.0, 0.5])


def test_a_window_of_one_keeps_each_value_exactly():
    """Running sums would give 0.8999999999999999 for the last value, and miss a threshold of 0.9 it meets."""
    values = np.array([0.0, 0.02, 0.02, 0.13, 0.24, 0.41, 0.48, 0.64, 0.9])
    np.testing.assert_array_equal(trailing_mean(values, 1), values)


def test_table_rows_are_window_means_at_milestones_and_the_first_crossing(tmp_path):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 0.2, 0.6, 1.0, 1.0])  # window-2 means: 0, .1, .4, .8, 1
    write_run(data, "b", 1, [0.0, 0.0, 0.0])  # ends at 3k: no value at 4k, never crosses 0.5
    spec(data, ["a", "b"])
    block, runs = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    lines = block.splitlines()
    assert lines[0] == "| run | 2k | 4k | end | env steps to 0.5 | TFLOP to 0.5 | wall to 0.5 | wall of the run |"
    assert lines[2] == "| seed 0 | 0.10 | 0.80 | 1.00 at 5k | 4k | 0.0143 | 4.0 min | 5.0 min |"  # 4 epochs
    assert lines[3] == "| seed 1 | 0.00 | - | 0.00 at 3k | not yet | - | - | 3.0 min |"
    assert "(results/a)" in block and [r.seed for r in runs] == [0, 1]
    # Over the 2 seeds, without intervals; seed 1 counts at its end (3k, 3 epochs, 3 min): lower bounds.
    statistics = lines[lines.index("| seeds | statistic | 2k | 4k | reached 0.5 | env steps to 0.5 | TFLOP to 0.5 | "
                                   "wall to 0.5 |"):]  # fmt: skip
    assert statistics[2:4] == ["| 2 seeds | mean | 0.05 | - | 1 of 2 | >= 3.5k | >= 0.0125 | >= 3.5 min |", ""]


def test_statistics_of_four_seeds_are_the_iqm_and_the_mean_with_intervals(tmp_path):
    data = tmp_path / "results"
    for seed, success in enumerate([[0.0, 0.2], [0.0, 0.4], [0.0, 0.6], [1.0, 1.0]]):  # means at 2k: .1 .2 .3 1
        write_run(data, f"s{seed}", seed, success)
    spec(data, [f"s{seed}" for seed in range(4)])
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    iqm, mean = [line for line in block.splitlines() if line.startswith("| 4 seeds |")]
    assert iqm.startswith("| 4 seeds | IQM [95% CI] | 0.25 [") and mean.startswith("| 4 seeds | mean [95% CI] | 0.40 [")
    # Only seed 3 reached 0.5 (at 1k); the others count at their end, 2k: the IQM of 1k, 2k, 2k, 2k is 2k.
    assert " | - | 1 of 4 | >= 2k [1k, 2k] | " in iqm


def test_metrics_show_the_averaged_actor_beside_the_actor_and_dip_the_lowest_after(tmp_path, monkeypatch):
    data = tmp_path / "results"
    write_run(data, "plain", 0, [0.0, 0.5, 0.0, 0.5, 0.5])  # window-2 means: 0, .25, .25, .25, .5
    write_run(data, "avg", 0, [0.0, 1.0, 0.0, 0.0, 1.0])  # means: 0, .5, .5, 0, .5
    lines = (data / "avg" / "metrics.jsonl").read_text().splitlines()
    averaged = [0, 1, 1, 1, 1]  # means: 0, .5, 1, 1, 1
    with_average = [json.dumps({**json.loads(line), "eval_avg_success_rate": a}) for line, a in zip(lines, averaged)]
    (data / "avg" / "metrics.jsonl").write_text("\n".join(with_average) + "\n")
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {
        "cpu": "a CPU", "runs": ["plain", "avg"], "threshold": 0.5, "milestones": [2000], "window": 2,
        "curve": "toy.png", "metrics": ["eval_success_rate", "eval_avg_success_rate"], "dip": True}}}))  # fmt: skip
    section = report.load_sections(data / "report.yaml")[0]
    block, runs = report.section_block(section, data)
    rows = block.splitlines()
    assert rows[0].endswith("| wall of the run | lowest after 0.5 |")
    # "plain" logged no averaged actor: one row. "avg" has a row per actor; its actor fell to 0 after first 0.5.
    assert rows[2].startswith("| evaluated=actor, seed 0 | 0.25 | 0.50 at 5k | 5k |") and rows[2].endswith("| - |")
    assert rows[3].startswith("| evaluated=actor, seed 0 | 0.50 |") and rows[3].endswith("| 0.00 at 4k |")
    assert rows[4].startswith("| evaluated=Polyak-averaged actor, seed 0 | 0.50 | 1.00 at 5k | 2k |")
    assert rows[4].endswith("| 1.00 at 3k |") and len(rows) > 5 and rows[5] == ""
    assert [r.variant for r in runs] == ["evaluated=actor"] * 2 + ["evaluated=Polyak-averaged actor"]
    assert set(report.legend_labels(section.legend_keys(), runs).values()) == {
        "evaluated=actor", "evaluated=Polyak-averaged actor"}  # fmt: skip
    report.draw_curve(section, runs, data, tmp_path / "toy.png")
    assert (tmp_path / "toy.png").stat().st_size > 0
    drawn: dict = {}
    monkeypatch.setattr(report, "plot", lambda curves, *args, **kwargs: drawn.update(kwargs, n=len(curves)))
    report.draw_curve(section, runs, data, tmp_path / "toy.png")
    assert drawn["n"] == 3 and drawn["runs_per_env"] == {TOY: 2}  # the title counts runs, not curves

    spec_text = (data / "report.yaml").read_text().replace('["eval_success_rate", ', "[")
    (data / "report.yaml").write_text(spec_text)
    with pytest.raises(report.ReportError, match="metrics must list eval_success_rate, then any of"):
        report.load_sections(data / "report.yaml")


def test_tflop_of_a_run_is_its_updates_times_the_hand_counted_flops_of_one(tmp_path):
    write_run(tmp_path, "a", 0, [0.0, 0.5, 1.0])
    run = load_run(tmp_path / "a")
    np.testing.assert_allclose(run.tflop, np.array([1, 2, 3]) * UPDATES_PER_EPOCH * TOY_FLOPS / 1e12, rtol=1e-12)
    with open(tmp_path / "a" / "metrics.jsonl", "a") as f:  # 2 ranks: an update combines 2 batches
        f.write(json.dumps({"env_steps": 4000, "updates": 40, "world_size": 2, "wall_s": 240.0,
                            "eval_success_rate": 1.0}) + "\n")  # fmt: skip
    assert load_run(tmp_path / "a").tflop[-1] == pytest.approx(80 * TOY_FLOPS / 1e12, rel=1e-12)
    with open(tmp_path / "a" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"env_steps": 5000, "wall_s": 300.0, "eval_success_rate": 1.0}) + "\n")
    with pytest.raises(report.ReportError, match="an evaluated epoch without 'updates'"):
        load_run(tmp_path / "a")


def test_flops_per_update_match_the_documented_fetch_push_recipe():
    """docs/performance.md: DDPG 3x256 on FetchPush costs 2.76 MFLOP per sample; configs of earlier versions
    give the batch as agent.batch_size."""
    config = {"agent": {"_target_": "agents.DDPG", "_partial_": True, "hidden": [256, 256, 256], "batch_size": 16},
              "env": {"id": "FetchPush-v4"}}  # fmt: skip
    assert update_cost.flops_per_update(config) == 16 * 2_757_632
    with pytest.raises(update_cost.UpdateCostError, match="no agent._target_"):
        update_cost.flops_per_update({"env": {"id": TOY}, "buffer": {"batch_size": 4}})


def test_check_fails_until_the_doc_is_rewritten_and_draws_the_curve(tmp_path, capsys):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 1.0])
    spec(data, ["a"], curve="img/toy.png")
    doc = tmp_path / "results.md"
    doc.write_text("# R\n\ntext\n<!-- report:toy -->\nold\n<!-- /report:toy -->\nmore\n")
    args = ["--doc", str(doc), "--data", str(data)]
    assert report_script.main([*args, "--check"]) == 1
    assert report_script.main(args) == 0
    assert report_script.main([*args, "--check"]) == 0
    text = doc.read_text()
    assert text.startswith("# R\n\ntext\n<!-- report:toy -->\n| run |")
    assert text.endswith("<!-- /report:toy -->\nmore\n")
    assert (tmp_path / "img" / "toy.png").stat().st_size > 1000


def test_bad_data_is_reported_by_name(tmp_path, capsys):
    data = tmp_path / "results"
    data.mkdir()
    spec(data, ["missing"])
    doc = tmp_path / "results.md"
    doc.write_text("<!-- report:toy -->\n<!-- /report:toy -->\n")
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "missing: expected metrics.jsonl and config.yaml" in capsys.readouterr().err
    write_run(data, "missing", 0, [0.0])
    doc.write_text("no markers\n")
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "no '<!-- report:toy -->'" in capsys.readouterr().err


@pytest.mark.skipif(not (report.DATA / "report.yaml").is_file(), reason="no committed run data")
def test_results_md_matches_the_committed_data():
    current, regenerated = report.build(report.DOC, report.DATA, draw=False)
    assert current == regenerated, "docs/results.md is out of date: run python scripts/report.py"


@pytest.mark.skipif(not (report.DATA / "report.yaml").is_file(), reason="no committed run data")
def test_readme_matches_the_committed_data():
    built = report_readme.build_readme(report.README, report.DOC, report.DATA)
    assert built is not None, "docs/results/report.yaml lists no readme figures"
    current, regenerated = built
    assert current == regenerated, "README.md is out of date: run python scripts/report.py"
    assert "<!-- report:readme -->\n- **" in current


def readme_spec(
    data: Path, at: int | None, section: str = "toy", runs: tuple[str, ...] = ("a", "b"), cpu: object = "a CPU"
) -> None:
    (data / "report.yaml").write_text(json.dumps({
        "sections": {"toy": {"cpu": cpu, "runs": list(runs), "threshold": 0.5, "milestones": [2000],
                             "window": 2}},
        "readme": [{"section": section, "title": "Toy in seconds", "command": "python scripts/train.py env=Toy",
                    "at": at}]}))  # fmt: skip


def test_readme_figures_come_from_a_section_and_link_to_it(tmp_path, capsys):
    data = tmp_path / "docs" / "results"
    write_run(data, "a", 0, [0.0, 0.2, 0.6, 1.0, 1.0])  # window-2 means: 0, .1, .4, .8, 1; walls 1-5 min
    write_run(data, "b", 1, [0.0, 1.0, 1.0])  # means: 0, .5, 1
    doc = tmp_path / "docs" / "results.md"
    doc.write_text("# R\n\n## PointReach-v0\n\n<!-- report:toy -->\n<!-- /report:toy -->\n")
    readme = tmp_path / "README.md"
    readme.write_text("# T\n<!-- report:readme -->\nold\n<!-- /report:readme -->\nmore\n")
    readme_spec(data, None)
    args = ["--doc", str(doc), "--readme", str(readme), "--data", str(data)]
    assert report_script.main([*args, "--check"]) == 1
    assert "README.md is out of date" in capsys.readouterr().err
    assert report_script.main(args) == 0
    assert report_script.main([*args, "--check"]) == 0
    line = readme.read_text().splitlines()[2]
    assert line == (
        "- **Toy in seconds**: `python scripts/train.py env=Toy` (seeds 0 and 1): eval success 1.00 at the end of "
        "the run (3k-5k env steps) for every seed (the mean of its last 2 evaluations); first >= 0.5 after 2k-4k "
        "env steps, 0.00717-0.0143 TFLOP of updates and 2.0-4.0 min of training; the whole run takes 3.0-5.0 min of "
        "training on a CPU "
        "([results](docs/results.md#pointreach-v0))."
    )
    readme_spec(data, None, runs=("a",))  # one seed: no "for every seed"
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "(seed 0): eval success 1.00 at the end of the run (5k env steps) (the mean of its last 2 " \
           "evaluations); first" in block  # fmt: skip
    readme_spec(data, 2000)
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "eval success 0.30 at 2k env steps, the mean of 2 seeds (0.10-0.50 per seed, each the mean of its last " \
           "2 evaluations); first >= 0.5 after 2k-4k env steps" in block  # fmt: skip
    assert block.endswith("2k env steps take 2.0 min of training per seed on a CPU "
                          "([results](docs/results.md#pointreach-v0)).")  # fmt: skip
    # From 3 seeds on: IQM [95% CI]. Reaching 0.5 at 4k, 2k and 3k: IQM (of 3, the mean) 3k; a resample of
    # three times the same seed has probability 1/27 > 2.5%, so the interval runs from the lowest to the highest.
    write_run(data, "c", 2, [0.0, 0.0, 1.0, 1.0, 1.0])  # means: 0, 0, .5, 1, 1
    readme_spec(data, None, runs=("a", "b", "c"))
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "(seeds 0, 1 and 2): eval success 1.00 [1.00, 1.00] at the end of the run (3k-5k env steps), IQM [95% " \
           "CI] over 3 seeds (1.00 for every seed, each the mean of its last 2 evaluations); first >= 0.5 after 3k " \
           "[2k, 4k] env steps, 0.0108 [0.00717, 0.0143] TFLOP of updates and 3.0 [2.0, 4.0] min of training " \
           "(IQM [95% CI]); the whole run" in block  # fmt: skip
    # A seed that never reached 0.5 counts at its end (5k, 5 epochs, 5 min): the IQM of 2k, 3k, 4k, 5k is 3.5k.
    write_run(data, "d", 3, [0.0, 0.0, 0.0, 0.0, 0.0])
    readme_spec(data, None, runs=("a", "b", "c", "d"))
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "; first >= 0.5 after >= 3.5k [" in block
    assert "of training (IQM [95% CI]; 3 of 4 seeds reached it, the others count at their last evaluation);" in block
    # Seeds on different CPUs: no training time in the bullet (one wall figure over two CPUs would mean nothing)
    readme_spec(data, 2000, runs=("a", "b", "c"), cpu={"a": "CPU one", "b": "CPU one", "c": "CPU two"})
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "first >= 0.5 after 3k [2k, 4k] env steps and 0.0108 [0.00717, 0.0143] TFLOP of updates (IQM [95% CI]); " \
           "training times on each seed's CPU: [results](docs/results.md#pointreach-v0)." in block  # fmt: skip
    assert " min" not in block and "CPU one" not in block
    readme_spec(data, 2000, runs=("a", "b"), cpu={"a": "CPU one", "b": "CPU two"})
    block, = report_readme.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "first >= 0.5 after 2k-4k env steps and 0.00717-0.0143 TFLOP of updates; training times" in block


def test_readme_figures_report_bad_entries(tmp_path, capsys):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 1.0])
    write_run(data, "b", 1, [0.0, 1.0])
    doc, readme = tmp_path / "results.md", tmp_path / "README.md"
    doc.write_text("## PointReach-v0\n<!-- report:toy -->\n<!-- /report:toy -->\n")
    readme.write_text("<!-- report:readme -->\n<!-- /report:readme -->\n")
    args = ["--doc", str(doc), "--readme", str(readme), "--data", str(data), "--check"]
    readme_spec(data, None, section="nope")
    assert report_script.main(args) == 2
    assert "readme entry 0 names no section: 'nope'" in capsys.readouterr().err
    readme_spec(data, 9000)
    assert report_script.main(args) == 2
    assert "ends before 9000 env steps" in capsys.readouterr().err
    readme_spec(data, None)
    doc.write_text("## Other-v0\n<!-- report:toy -->\n<!-- /report:toy -->\n")
    assert report_script.main(args) == 2
    assert "no '## PointReach-v0' heading to link to" in capsys.readouterr().err
    doc.write_text("## PointReach-v0\n<!-- report:toy -->\n<!-- /report:toy -->\n")
    readme.write_text("no markers\n")
    assert report_script.main(args) == 2
    assert "README.md: no '<!-- report:readme -->'" in capsys.readouterr().err


def test_a_sweep_labels_rows_by_config_keys_and_means_each_variant(tmp_path, capsys):
    data = tmp_path / "results"
    for name, seed, batch, success in [("a0", 0, 256, [0.0, 1.0]), ("a1", 1, 256, [0.0, 0.0]),
                                       ("b0", 0, 1024, [1.0, 1.0])]:  # fmt: skip
        write_run(data, name, seed, success)
        config = (data / name / "config.yaml").read_text().replace("batch_size: 4", f"batch_size: {batch}")
        (data / name / "config.yaml").write_text(config + "  strategy: {_target_: x.Mix, weights: {future: 1}}\n")
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU",
        "runs": ["a0", "a1", "b0"], "milestones": [2000], "window": 1,
        "label_keys": ["buffer.batch_size", "buffer.strategy"]}}}))  # fmt: skip
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    rows = [line.split(" | ")[:2] for line in block.splitlines()[2:] if line.startswith("| ")]
    variant = "batch_size=256, strategy={weights={future=1}}"
    assert rows[:3] == [[f"| {variant}, seed 0", "1.00"], [f"| {variant}, seed 1", "0.00"],
                        ["| batch_size=1024, strategy={weights={future=1}}, seed 0", "1.00"]]  # fmt: skip
    assert rows[4:] == [[f"| {variant}, 2 seeds", "mean"]]  # statistics over the runs of a variant with two or more
    (data / "report.yaml").write_text(
        json.dumps({"sections": {"toy": {"cpu": "a CPU", "runs": ["a0"], "label_keys": ["agent.lr"]}}}))  # fmt: skip
    doc = tmp_path / "results.md"
    doc.write_text("<!-- report:toy -->\n<!-- /report:toy -->\n")
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "no key 'agent.lr' (label_keys)" in capsys.readouterr().err
    (data / "report.yaml").write_text(
        json.dumps({"sections": {"toy": {"cpu": "a CPU", "runs": ["a0"], "label_keys": "agent.lr"}}}))  # fmt: skip
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "label_keys must be a list of config keys, got 'agent.lr'" in capsys.readouterr().err
    # A run made before an option existed is labeled with the section's label_defaults for it.
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU",
        "runs": ["a0", "b0"], "label_keys": ["buffer.batch_size", "agent.lr"],
        "label_defaults": {"agent.lr": 0.001}}}}))  # fmt: skip
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    assert "| batch_size=256, lr=0.001, seed 0 |" in block and "| batch_size=1024, lr=0.001, seed 0 |" in block
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU",
        "runs": ["a0"], "label_keys": ["buffer.batch_size"], "label_defaults": {"agent.lr": 0.001}}}}))  # fmt: skip
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "label_defaults must map some of label_keys ['buffer.batch_size'] to values" in capsys.readouterr().err


def test_runs_on_different_cpus_get_a_cpu_column_and_every_run_must_name_one(tmp_path, capsys):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 1.0])
    write_run(data, "b", 1, [0.0, 0.0])
    cpus = {"a": "CPU one", "b": "CPU two"}
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": cpus, "runs": ["a", "b"]}}}))
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    lines = block.splitlines()
    assert lines[0].endswith("| wall of the run | CPU |")
    assert lines[2].endswith("| 2.0 min | CPU one |") and lines[3].endswith("| 2.0 min | CPU two |")
    assert [line for line in lines if line.startswith("| 2 seeds | mean |")][0].endswith("| - |")  # no statistic
    # of wall times measured on different CPUs
    assert "evaluation) on the CPU of each row." in block
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": {"a": "CPU one"}, "runs": ["a", "b"]}}}))
    with pytest.raises(report.ReportError, match=r"section 'toy' is malformed \(cpu must name the CPU of every run"):
        report.load_sections(data / "report.yaml")


def test_a_legend_that_does_not_fit_in_its_figure_is_refused(tmp_path):
    import matplotlib.pyplot as plt

    from training.curves import PlotError, check_legends

    fig, ax = plt.subplots(figsize=(3.0, 2.0))
    ax.plot([0, 1], [0, 1], label="a label far too long for a figure three inches wide")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))  # outside the axes, to the right: cut off
    with pytest.raises(PlotError, match=r"wide\.png: the legend does not fit in the figure"):
        check_legends(fig, "wide.png")
    ax.legend(loc="best")  # inside, but wider than the figure
    with pytest.raises(PlotError, match=r"wide\.png: the legend does not fit in the figure"):
        check_legends(fig, "wide.png")
    ax.lines[0].set_label("short")
    ax.legend(loc="best")
    check_legends(fig, "wide.png")
    plt.close(fig)


def test_curves_of_a_sweep_are_labeled_by_what_differs_with_the_legend_below(tmp_path, monkeypatch, capsys):
    from training import curves

    data = tmp_path / "results"
    values = [("a0", 0, "future", 0.3, 0.2), ("b0", 0, "final", 0.3, 0.2), ("c0", 0, "future", 0.2, 0.1)]
    for name, seed, strategy, random_eps, noise_eps in values:
        write_run(data, name, seed, [0.0, 0.5, 1.0])
        config = (
            (data / name / "config.yaml")
            .read_text()
            .replace("hidden: [8]", f"hidden: [8]\n  random_eps: {random_eps}\n  noise_eps: {noise_eps}")
        )
        (data / name / "config.yaml").write_text(config + f"  strategy: {strategy}\n  replay_k: 4\n")  # fmt: skip
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU", "runs": ["a0", "b0", "c0"],
        "label_keys": ["buffer.strategy", "buffer.replay_k", "agent.random_eps", "agent.noise_eps"],
        "curve": "img/toy.png"}}}))  # fmt: skip
    section = report.load_sections(data / "report.yaml")[0]
    block, runs = report.section_block(section, data)
    assert "| strategy=future, replay_k=4, random_eps=0.3, noise_eps=0.2, seed 0 |" in block  # tables: every key
    assert list(report.legend_labels(section.label_keys, runs).values()) == [
        "strategy=future, random_eps=0.3, noise_eps=0.2",
        "strategy=final",
        "random_eps=0.2, noise_eps=0.1",
    ]
    figures = []
    monkeypatch.setattr(curves.plt, "close", figures.append)
    report.draw_curve(section, runs, data, tmp_path / "img" / "toy.png")
    [fig] = figures
    assert [ax.get_legend() for ax in fig.axes] == [None] and len(fig.legends) == 1  # long labels: below
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "strategy=future, random_eps=0.3, noise_eps=0.2 (seed 0)", "strategy=final (seed 0)",
        "random_eps=0.2, noise_eps=0.1 (seed 0)"]  # fmt: skip
    assert (tmp_path / "img" / "toy.png").is_file()
    # Labels that cannot wrap make a legend wider than the figure: the report refuses to write it.
    monkeypatch.setattr(curves, "WRAP", 1000)
    config = (data / "b0" / "config.yaml").read_text()
    (data / "b0" / "config.yaml").write_text(config.replace("strategy: final", "strategy: " + "final_" * 25))
    (tmp_path / "img" / "toy.png").unlink()
    doc = tmp_path / "results.md"
    doc.write_text("<!-- report:toy -->\n<!-- /report:toy -->\n")
    assert report_script.main(["--doc", str(doc), "--data", str(data)]) == 2
    assert "error: section 'toy': toy.png: the legend does not fit in the figure" in capsys.readouterr().err
    assert not (tmp_path / "img" / "toy.png").exists()


def test_a_grid_section_fills_its_own_doc_with_end_values_by_two_config_keys(tmp_path, capsys):
    """``grid: [env.n_bits, buffer.replay_k]``: a row per number of bits, a column per replay_k in the order the runs
    are listed, each cell the mean (min-max) of the runs' end values; ``doc`` puts the block in another doc."""
    data = tmp_path / "docs" / "results"
    ends = {(10, 4): [1.0, 1.0], (30, 4): [0.9, 1.0], (10, 0): [0.5, 0.3], (30, 0): [0.0, 0.0]}
    names = []
    for (bits, k), values in ends.items():
        for seed, end in enumerate(values):
            name = f"n{bits}_k{k}_s{seed}"
            write_run(data, name, seed, [0.0, end], steps_per_epoch=bits * 100)
            config = TOY_CONFIG.replace("buffer:\n", f"buffer:\n  replay_k: {k}\n")
            (data / name / "config.yaml").write_text(f"seed: {seed}\nenv:\n  id: {TOY}\n  n_bits: {bits}\n{config}")
            names.append(name)
    (data / "report.yaml").write_text(json.dumps({"sections": {
        "bits": {"cpu": "a CPU", "runs": names, "window": 1, "doc": "beyond.md",
                 "grid": ["env.n_bits", "buffer.replay_k"], "curve": "img/bits.png"},
        "toy": {"cpu": "a CPU", "runs": ["n10_k4_s0"], "window": 1}}}))  # fmt: skip
    results, beyond = tmp_path / "docs" / "results.md", tmp_path / "docs" / "beyond.md"
    results.write_text("<!-- report:toy -->\n<!-- /report:toy -->\n")
    beyond.write_text("# Beyond\n<!-- report:bits -->\n<!-- /report:bits -->\n")
    args = ["--doc", str(results), "--data", str(data), "--readme", str(tmp_path / "README.md")]
    assert report_script.main([*args, "--check"]) == 1
    assert f"{beyond} is out of date" in capsys.readouterr().err
    assert report_script.main(args) == 0 and report_script.main([*args, "--check"]) == 0
    lines = beyond.read_text().splitlines()
    assert lines[2:6] == [
        "| n_bits | env steps | replay_k=4 | replay_k=0 |",
        "|---|---|---|---|",
        "| 10 | 2k | 1.00 | 0.40 (0.30-0.50) |",
        "| 30 | 6k | 0.95 (0.90-1.00) | 0.00 |",
    ]
    assert "(results/n30_k0_s1)" in beyond.read_text() and "report:bits" not in results.read_text()
    assert (tmp_path / "docs" / "img" / "bits.png").stat().st_size > 1000
    (data / "report.yaml").write_text(json.dumps({"sections": {"bits": {"cpu": "a CPU", "runs": names,
        "grid": ["env.n_bits"], "doc": "beyond.md"}}}))  # fmt: skip
    assert report_script.main([*args, "--check"]) == 2
    assert "grid must be two config keys [row key, column key]" in capsys.readouterr().err
    (data / "report.yaml").write_text(json.dumps({"sections": {"bits": {"cpu": "a CPU", "runs": names,
        "doc": "../elsewhere.md"}}}))  # fmt: skip
    assert report_script.main([*args, "--check"]) == 2
    assert "doc must name a markdown file beside docs/results.md" in capsys.readouterr().err


def test_a_baseline_labels_each_run_by_where_it_differs_from_it(tmp_path, monkeypatch):
    data = tmp_path / "results"
    values = [("lev/base0", 0, 0.95, None), ("lev/base1", 1, 0.95, None), ("lev/slow0", 0, 0.98, None),
              ("lev/both0", 0, 0.98, 10)]  # fmt: skip
    for name, seed, polyak, every in values:
        write_run(data, name, seed, [0.0, 0.5, 1.0])
        config = (data / name / "config.yaml").read_text().replace("hidden: [8]", f"hidden: [8]\n  polyak: {polyak}")
        every_yaml = "null" if every is None else every
        (data / name / "config.yaml").write_text(config + f"runner:\n  target_update_every: {every_yaml}\n")
    section_spec = {"cpu": "a CPU", "runs": [v[0] for v in values], "milestones": [2000],
                    "label_keys": ["agent.polyak", "runner.target_update_every"], "baseline": "lev/base0"}  # fmt: skip
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": section_spec}}))
    section = report.load_sections(data / "report.yaml")[0]
    block, runs = report.section_block(section, data)
    assert [r.variant for r in runs] == ["baseline", "baseline", "polyak=0.98", "polyak=0.98, target_update_every=10"]
    rows = block.splitlines()
    assert [row.split(" | ")[0] for row in rows[2:6]] == [
        "| baseline, seed 0", "| baseline, seed 1", "| polyak=0.98, seed 0",
        "| polyak=0.98, target_update_every=10, seed 0"]  # fmt: skip
    assert "Baseline: `lev/base0` (polyak=0.95, target_update_every=None); the other runs' rows name" in block
    assert "| baseline, 2 seeds | mean | 0.25 |" in block  # the two baseline seeds are one group of the statistics
    drawn: dict = {}
    monkeypatch.setattr(report, "plot", lambda curves, *args, **kwargs: drawn.update(groups=[c.group for c in curves]))
    report.draw_curve(section, runs, data, tmp_path / "toy.png")
    assert drawn["groups"] == ["baseline", "baseline", "polyak=0.98", "polyak=0.98, target_update_every=10"]
    # A baseline that is not one of the section's runs, or one without label keys to compare, is refused.
    refused = [({"baseline": "lev/base2"}, "baseline must name one of the section's runs"),
               ({"baseline": "lev/base0", "label_keys": []}, "baseline labels runs by the label_keys")]  # fmt: skip
    for bad, message in refused:
        (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {**section_spec, **bad}}}))
        with pytest.raises(report.ReportError, match=message):
            report.load_sections(data / "report.yaml")
