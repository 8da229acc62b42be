"""MTAL tables: the paper's column names map onto ours (Typographic -> Typographic*, Coil-20 -> COIL-20), and
a column we cannot fill offline (Office-Home Art) renders n/a with a footnote on how to prepare it -- never an
invitation to train -- unless the records hold the task."""
from __future__ import annotations

from mtlbench.config.paper_tables import get_paper_table
from mtlbench.report.render import to_markdown
from mtlbench.report.tables import build_table
from mtlbench.results import RunRecord


def record(row: str, values: dict, missing: list[str]) -> RunRecord:
    return RunRecord(spec_name="mtal", row=row, method="stl", seed=0, spec_file="s.yaml", spec={}, params={},
                     dataset="mtal_unrelated", tasks=list(values), data_metadata={"missing_tasks": missing},
                     primary_metric="accuracy", selected_on="val", best_iteration=1, iterations_run=1, history=[],
                     n_params=1000, train_time_s=1.0, wall_time_s=1.0,
                     metrics={"test": {"accuracy": {"tasks": values, "mean": sum(values.values()) / len(values)}}})


def test_unrelated_table_maps_coil_and_marks_art_not_available():
    recs = [record("Single-task", {"HD": 0.7, "COIL-20": 0.99, "Amazon": 0.75}, ["Art"])]
    table = build_table(recs, paper=get_paper_table("mtal_table4_unrelated_with_relations"), rows=["Single-task"])
    ours = next(r for r in table.rows if r[1].startswith("ours"))
    assert table.header[:6] == ["method", "source", "HD", "Coil-20", "Art", "Amazon"]
    assert ours[2:6] == ["0.700", "0.990", "n/a", "0.750"]
    text = to_markdown(table)
    assert "n/a: Art -- Office-Home Art is not available offline" in text and "prepare image-folder" in text
    assert "mtlbench train" not in text
    assert "Coil-20 = our COIL-20" in text


def test_art_fills_its_column_once_prepared():
    recs = [record("Multi-task", {"HD": 0.7, "COIL-20": 1.0, "Art": 0.55, "Amazon": 0.75}, [])]
    table = build_table(recs, paper=get_paper_table("mtal_table5_unrelated_without_relations"), rows=["Multi-task"])
    ours = next(r for r in table.rows if r[1].startswith("ours"))
    assert ours[2:6] == ["0.700", "0.550", "1.000", "0.750"]
    assert not any(n.startswith("n/a") for n in table.notes)


def test_related_table_maps_the_typographic_stand_in():
    recs = [record("Cross-Stitch", {"HD": 0.8, "A": 0.85, "a": 0.8, "Typographic*": 0.95}, [])]
    table = build_table(recs, paper=get_paper_table("mtal_table3_related_without_relations"), rows=["Cross-Stitch"])
    ours = next(r for r in table.rows if r[1].startswith("ours"))
    assert ours[2:6] == ["0.800", "0.850", "0.950", "0.800"]  # HD, A, Typographic (= our Typographic*), a


def test_own_table_footnotes_tasks_left_out():
    table = build_table([record("STL", {"HD": 0.7, "Amazon": 0.7}, ["Art"])])
    assert "not in these runs (data not prepared): Art" in table.notes


def test_a_method_warning_in_some_records_is_a_note_naming_their_seeds():
    """A DMTRL seed that factorised random tensors (its STL checkpoint was missing) must not average in unsaid."""
    def dmtrl(seed: int, summary: dict) -> RunRecord:
        rec = record("DMTRL-LAF", {"HD": 0.7}, [])
        return rec.model_copy(update={"seed": seed, "summary": summary})
    random = {"dmtrl": {"init": "random", "warning": "DMTRL factorises a random tensor (no STL checkpoint)"}}
    recs = [dmtrl(0, {"dmtrl": {"init": "stl"}}), dmtrl(1, random), dmtrl(2, random)]
    table = build_table(recs)
    assert "DMTRL-LAF seed(s) 1, 2: DMTRL factorises a random tensor (no STL checkpoint)" in table.notes
    assert not any("random tensor" in n for n in build_table(recs[:1]).notes)
