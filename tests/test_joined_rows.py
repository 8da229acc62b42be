"""A row that trains some of the data's tasks (``tasks``) and rows joined into one table row (``table_row``): MTAL's
Tables 2 and 4 train each baseline as one joint run per task group and print it as one row."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.results import load_records

runner = CliRunner()

SPEC = """
name: grouped
data:
  dataset: synthetic_vector
  options: {n_groups: 2, tasks_per_group: 2, input_dim: 16, n_examples: 400, input_noise: 0.3}
backbone:
  hidden: [16, 16]
methods:
  - {name: stl, label: STL}
  - {name: hard_share, label: "Hard-Share [A1, A2]", tasks: [A1, A2], table_row: Hard-Share}
  - {name: hard_share, label: "Hard-Share [B1, B2, X]", tasks: [B1, B2, X], table_row: Hard-Share}
optimizer: {lr: 0.003}
training: {iterations: 20, batch_per_task: 16, eval_every: 10, threads: 1}
seeds: [0, 1, 2]
output: {dir: OUT}
"""


def test_group_rows_train_their_tasks_and_render_as_one_row(write_spec, tmp_path):
    out = tmp_path / "runs"
    spec = write_spec(SPEC.replace("OUT", str(out)))
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 0, result.output
    records = {(r.row, r.seed): r for r in load_records(out / "grouped")}
    a, b = records[("Hard-Share [A1, A2]", 0)], records[("Hard-Share [B1, B2, X]", 0)]
    metric = a.primary_metric
    assert a.tasks == ["A1", "A2"] and set(a.metrics["test"][metric].tasks) == {"A1", "A2"}
    assert b.tasks == ["B1", "B2", "X"] and a.data_metadata["groups"] == [["A1", "A2"]]
    assert records[("STL", 0)].tasks == ["A1", "A2", "B1", "B2", "X"]
    # a row without `tasks` keeps the identity it has in a spec that has no such rows
    plain = write_spec(SPEC.replace("OUT", str(tmp_path / "plain")).split("  - {name: hard_share")[0]
                       + "optimizer: {lr: 0.003}\ntraining: {iterations: 20, batch_per_task: 16, eval_every: 10, "
                         "threads: 1}\nseeds: [0]\noutput: {dir: " + str(tmp_path / "plain") + "}\n", "plain.yaml")
    assert runner.invoke(app, ["train", str(plain)]).exit_code == 0
    alone = json.loads((tmp_path / "plain" / "grouped" / "STL" / "seed0.json").read_text())
    assert alone["identity"] == records[("STL", 0)].identity
    shown = runner.invoke(app, ["compare", str(spec), "--format", "csv", "--vs", "STL"]).output
    lines = [line.split(",") for line in shown.strip().splitlines()]
    header, rows = lines[0], {r[0]: dict(zip(lines[0], r)) for r in lines[1:]}
    assert set(rows) == {"STL", "Hard-Share"}, shown  # the group runs are one row
    joined = rows["Hard-Share"]
    for task in ("A1", "A2", "B1", "B2", "X"):
        run = a if task in a.tasks else b
        mean = sum(records[(run.row, s)].metrics["test"][metric].tasks[task] for s in range(3)) / 3
        assert joined[task].startswith(f"{mean:.3f}"), (task, joined[task])
    per_seed = [sum([*records[("Hard-Share [A1, A2]", s)].metrics["test"][metric].tasks.values(),
                     *records[("Hard-Share [B1, B2, X]", s)].metrics["test"][metric].tasks.values()]) / 5
                for s in range(3)]
    assert joined["mean"].startswith(f"{sum(per_seed) / 3:.3f}"), joined
    p_column = next(h for h in header if h.startswith("p vs STL"))
    assert joined["seeds"] == "3" and joined[p_column] not in ("", "—")
    # a seed that lacks one group's run is left out, never shown as a mean over fewer tasks
    (out / "grouped" / "Hard-Share_B1_B2_X" / "seed2.json").unlink()
    shown = runner.invoke(app, ["compare", str(spec), "--format", "markdown", "--vs", "STL"]).output
    assert "Hard-Share: seed(s) 2 left out (a group's run is missing)" in shown
    assert "| Hard-Share |" in shown and "| 2 |" in shown.split("| Hard-Share |")[1].splitlines()[0]


@pytest.mark.parametrize("methods, message", [
    ('  - {name: hard_share, label: HS, tasks: [A1, Z9]}',
     "methods[1].tasks: dataset 'synthetic_vector' has no task 'Z9'"),
    ('  - {name: hard_share, label: HS, tasks: [A1], table_row: STL}',
     "table_row 'STL' of row 'HS' is another row's label"),
    ('  - {name: hard_share, label: HS, table_row: Hard-Share}', "row 'HS' has a table_row but no tasks"),
    ('  - {name: hard_share, label: H1, tasks: [A1, A2], table_row: HS}\n'
     '  - {name: hard_share, label: H2, tasks: [A2, B1], table_row: HS}', "the rows joined as 'HS' name a task twice"),
])
def test_bad_task_rows_are_one_line_exit_2(write_spec, tmp_path, methods, message):
    text = SPEC.replace("OUT", str(tmp_path)).split("  - {name: hard_share")[0] + methods + "\n" + \
        SPEC.split("table_row: Hard-Share}\n")[-1].replace("OUT", str(tmp_path))
    result = runner.invoke(app, ["validate", str(write_spec(text))])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
