"""scripts/report.py: tables and README figures from committed run data, and docs/results.md and README.md kept
in step with that data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import report as report_script

from training import report

ROOT = Path(__file__).resolve().parent.parent


def write_run(data: Path, name: str, seed: int, success: list[float], steps_per_epoch: int = 1000) -> None:
    run = data / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\nenv:\n  id: Toy-v0\n")
    lines = [
        json.dumps({"epoch": i, "env_steps": (i + 1) * steps_per_epoch, "wall_s": 60.0 * (i + 1),
                    "eval_success_rate": s})  # fmt: skip
        for i, s in enumerate(success)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def spec(data: Path, runs: list[str], curve: str | None = None) -> None:
    (data / "report.yaml").write_text(
        json.dumps({"sections": {"toy": {"cpu": "a CPU", "runs": runs, "threshold": 0.5, "milestones": [2000, 4000],
                                         "window": 2, "curve": curve, "smooth": 1}}})  # fmt: skip
    )


def test_trailing_mean_uses_fewer_values_at_the_start():
    np.testing.assert_allclose(report.trailing_mean(np.array([0.0, 1.0, 1.0, 0.0]), 2), [0.0, 0.5, 1.0, 0.5])


def test_table_rows_are_window_means_at_milestones_and_the_first_crossing(tmp_path):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 0.2, 0.6, 1.0, 1.0])  # window-2 means: 0, .1, .4, .8, 1
    write_run(data, "b", 1, [0.0, 0.0, 0.0])  # ends at 3k: no value at 4k, never crosses 0.5
    spec(data, ["a", "b"])
    block, runs = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    rows = [line for line in block.splitlines() if line.startswith("| seed") or line.startswith("| mean")]
    assert rows[0] == "| seed 0 | 0.10 | 0.80 | 1.00 at 5k | 4k | 4.0 min | 5.0 min |"
    assert rows[1] == "| seed 1 | 0.00 | - | 0.00 at 3k | not yet | - | 3.0 min |"
    assert rows[2] == "| mean of 2 | 0.05 | - | 0.50 |  |  |  |"
    assert "(results/a)" in block and [r.seed for r in runs] == [0, 1]


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
    built = report.build_readme(report.README, report.DOC, report.DATA)
    assert built is not None, "docs/results/report.yaml lists no readme figures"
    current, regenerated = built
    assert current == regenerated, "README.md is out of date: run python scripts/report.py"
    assert "<!-- report:readme -->\n- **" in current


def readme_spec(data: Path, at: int | None, section: str = "toy", runs: tuple[str, ...] = ("a", "b")) -> None:
    (data / "report.yaml").write_text(json.dumps({
        "sections": {"toy": {"cpu": "a CPU", "runs": list(runs), "threshold": 0.5, "milestones": [2000],
                             "window": 2}},
        "readme": [{"section": section, "title": "Toy in seconds", "command": "python scripts/train.py env=Toy",
                    "at": at}]}))  # fmt: skip


def test_readme_figures_come_from_a_section_and_link_to_it(tmp_path, capsys):
    data = tmp_path / "docs" / "results"
    write_run(data, "a", 0, [0.0, 0.2, 0.6, 1.0, 1.0])  # window-2 means: 0, .1, .4, .8, 1; walls 1-5 min
    write_run(data, "b", 1, [0.0, 1.0, 1.0])  # means: 0, .5, 1
    doc = tmp_path / "docs" / "results.md"
    doc.write_text("# R\n\n## Toy-v0\n\n<!-- report:toy -->\n<!-- /report:toy -->\n")
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
        "env steps and 2.0-4.0 min of training; the whole run takes 3.0-5.0 min of training on a CPU "
        "([results](docs/results.md#toy-v0))."
    )
    readme_spec(data, None, runs=("a",))  # one seed: no "for every seed"
    block, = report.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "(seed 0): eval success 1.00 at the end of the run (5k env steps) (the mean of its last 2 " \
           "evaluations); first" in block  # fmt: skip
    readme_spec(data, 2000)
    block, = report.build_readme(readme, doc, data)[1].splitlines()[2:3]  # fmt: skip
    assert "eval success 0.30 at 2k env steps, the mean of 2 seeds (0.10-0.50 per seed, each the mean of its last " \
           "2 evaluations); first >= 0.5 after 2k-4k env steps" in block  # fmt: skip
    assert block.endswith(
        "2k env steps take 2.0 min of training per seed on a CPU ([results](docs/results.md#toy-v0)).")  # fmt: skip


def test_readme_figures_report_bad_entries(tmp_path, capsys):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 1.0])
    write_run(data, "b", 1, [0.0, 1.0])
    doc, readme = tmp_path / "results.md", tmp_path / "README.md"
    doc.write_text("## Toy-v0\n<!-- report:toy -->\n<!-- /report:toy -->\n")
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
    assert "no '## Toy-v0' heading to link to" in capsys.readouterr().err
    doc.write_text("## Toy-v0\n<!-- report:toy -->\n<!-- /report:toy -->\n")
    readme.write_text("no markers\n")
    assert report_script.main(args) == 2
    assert "README.md: no '<!-- report:readme -->'" in capsys.readouterr().err


def test_a_sweep_labels_rows_by_config_keys_and_means_each_variant(tmp_path, capsys):
    data = tmp_path / "results"
    for name, seed, batch, success in [("a0", 0, 256, [0.0, 1.0]), ("a1", 1, 256, [0.0, 0.0]),
                                       ("b0", 0, 1024, [1.0, 1.0])]:  # fmt: skip
        write_run(data, name, seed, success)
        with open(data / name / "config.yaml", "a") as f:
            f.write(f"agent:\n  batch_size: {batch}\n")
            f.write("buffer:\n  strategy: {_target_: x.Mix, weights: {future: 1}}\n")
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU",
        "runs": ["a0", "a1", "b0"], "milestones": [2000], "window": 1,
        "label_keys": ["agent.batch_size", "buffer.strategy"]}}}))  # fmt: skip
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    rows = [line.split(" | ")[:2] for line in block.splitlines()[2:] if line.startswith("| ")]
    variant = "batch_size=256, strategy={weights={future=1}}"
    assert rows == [[f"| {variant}, seed 0", "1.00"], [f"| {variant}, seed 1", "0.00"],
                    [f"| mean of 2, {variant}", "0.50"],
                    ["| batch_size=1024, strategy={weights={future=1}}, seed 0", "1.00"]]  # fmt: skip
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
        "runs": ["a0", "b0"], "label_keys": ["agent.batch_size", "agent.lr"],
        "label_defaults": {"agent.lr": 0.001}}}}))  # fmt: skip
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    assert "| batch_size=256, lr=0.001, seed 0 |" in block and "| batch_size=1024, lr=0.001, seed 0 |" in block
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": "a CPU",
        "runs": ["a0"], "label_keys": ["agent.batch_size"], "label_defaults": {"agent.lr": 0.001}}}}))  # fmt: skip
    assert report_script.main(["--doc", str(doc), "--data", str(data), "--check"]) == 2
    assert "label_defaults must map some of label_keys ['agent.batch_size'] to values" in capsys.readouterr().err


def test_runs_on_different_cpus_get_a_cpu_column_and_every_run_must_name_one(tmp_path, capsys):
    data = tmp_path / "results"
    write_run(data, "a", 0, [0.0, 1.0])
    write_run(data, "b", 1, [0.0, 0.0])
    cpus = {"a": "CPU one", "b": "CPU two"}
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": cpus, "runs": ["a", "b"]}}}))
    block, _ = report.section_block(report.load_sections(data / "report.yaml")[0], data)
    lines = block.splitlines()
    assert lines[0].endswith("| wall | CPU |")
    assert lines[2].endswith("| 2.0 min | CPU one |") and lines[3].endswith("| 2.0 min | CPU two |")
    assert lines[4] == "| mean of 2 | 0.25 |  |  |  |  |"  # ends: 0.5 and 0 (window 10)
    assert "evaluation) on the CPU of each row." in block
    (data / "report.yaml").write_text(json.dumps({"sections": {"toy": {"cpu": {"a": "CPU one"}, "runs": ["a", "b"]}}}))
    with pytest.raises(report.ReportError, match=r"section 'toy' is malformed \(cpu must name the CPU of every run"):
        report.load_sections(data / "report.yaml")
