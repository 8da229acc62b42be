"""Omniglot: 50 alphabet tasks from the npz pair and from the original PNG layout, and both splits."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from mtlbench.data.omniglot import Omniglot
from mtlbench.prepare.omniglot import prepare_omniglot, read_alphabets
from tests.data_support import assert_matches_expected, shared


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_omniglot(shared("omniglot"), tmp_path_factory.mktemp("om") / "omniglot", seed=0)


@pytest.fixture(scope="module")
def data(prepared):
    return Omniglot.load(Omniglot.Options(), 0, prepared)


def test_counts(prepared, data):
    m = json.loads((prepared / "manifest.json").read_text())
    assert len(m["tasks"]) == data.info.n_tasks == 50
    assert sum(t["n_classes"] for t in m["tasks"]) == 1623
    assert sum(t["n_examples"] for t in m["tasks"]) == 32_460
    assert m["split"]["schemes"]["default"]["sizes"] == {"train": 1623 * 14, "val": 1623 * 2, "test": 1623 * 4}
    assert {t.n_classes for t in data.info.tasks} >= {14, 55} and min(t.n_classes for t in data.info.tasks) == 14
    assert data.info.tasks[0].name == "Arcadian" and data.info.tasks[-1].name == "ULOG"
    assert "Braille" in data.info.task_names
    assert all(t.input_shape == (1, 105, 105) for t in data.info.tasks)


def test_manifest_is_the_expected_one(prepared):
    assert_matches_expected(json.loads((prepared / "manifest.json").read_text()), "omniglot")


def test_default_split_is_14_2_4_per_character(data):
    for t in (0, 6, 49):
        for s, n in (("train", 14), ("val", 2), ("test", 4)):
            assert set(torch.bincount(data.split(s)[t].y).tolist()) == {n}
        rows = [set(data.split(s)[t].index.tolist()) for s in ("train", "val", "test")]
        assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]


def test_images_are_ink_one_and_match_the_npz(data):
    raw = np.load(shared("omniglot") / "images_evaluation.npz")["images"]
    ulog = data.split("train")[49]
    alpha = next(a for a in read_alphabets(shared("omniglot") / "alphabets.csv") if a["name"] == "ULOG")
    x, y = ulog.batch(torch.arange(3))
    for i in range(3):
        row = int(ulog.index[i])
        char, drawing = divmod(row, 20)
        want = ~raw[alpha["first"] - 965 + char, drawing]
        assert torch.equal(x[i, 0], torch.from_numpy(want.astype(np.float32))) and int(y[i]) == char
    assert 0.01 < x.mean() < 0.3  # ink is the minority of pixels


def test_paper_faithful_split_selects_on_test(prepared):
    pf = Omniglot.load(Omniglot.Options(split="paper_faithful"), 0, prepared)
    assert pf.info.metadata["val_is_test"] is True
    total = sum(len(s) for s in pf.split("train")) + sum(len(s) for s in pf.split("test"))
    assert total == 32_460
    assert 0.88 < sum(len(s) for s in pf.split("train")) / total < 0.92
    assert all(torch.equal(v.index, t.index) for v, t in zip(pf.split("val"), pf.split("test")))


def test_unknown_split_name_is_refused(prepared):
    from mtlbench.errors import DataError
    with pytest.raises(DataError, match=r"no split 'best' in the manifest .has: default, paper_faithful."):
        Omniglot.load(Omniglot.Options(split="best"), 0, prepared)


def write_png_layout(root, alphabets):
    """Omniglot's original layout for a few alphabets: folders for background, a zip for evaluation."""
    from PIL import Image
    src = shared("omniglot")
    for a in alphabets:
        imgs = np.load(src / f"images_{a['set']}.npz")["images"]
        first = 1 if a["set"] == "background" else 965
        for c, char_id in enumerate(range(a["first"], a["last"] + 1)):
            for d in range(20):
                rel = f"{a['name']}/character{c + 1:02d}/{char_id:04d}_{d + 1:02d}.png"
                path = root / f"images_{a['set']}" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(imgs[char_id - first, d]).convert("1").save(path)
    ev = root / "images_evaluation"
    if ev.exists():
        with zipfile.ZipFile(root / "images_evaluation.zip", "w") as zf:
            for p in sorted(ev.rglob("*.png")):
                zf.write(p, "images_evaluation/" + str(p.relative_to(ev)))
        import shutil
        shutil.rmtree(ev)


def test_png_layout_gives_the_same_tasks(prepared, data, tmp_path):
    alphabets = [a for a in read_alphabets(shared("omniglot") / "alphabets.csv")
                 if a["name"] in ("Balinese", "Angelic")]
    write_png_layout(tmp_path / "raw", alphabets)
    assert (tmp_path / "raw" / "images_evaluation.zip").exists()
    out = prepare_omniglot(tmp_path / "raw", tmp_path / "png", seed=0)
    png = Omniglot.load(Omniglot.Options(), 0, out)
    assert png.info.task_names == ["Balinese", "Angelic"]
    for t, name in enumerate(png.info.task_names):
        ref = data.info.task_names.index(name)
        assert png.info.tasks[t] == data.info.tasks[ref]
        for s in ("train", "val", "test"):
            a, b = png.split(s)[t], data.split(s)[ref]
            assert torch.equal(a.index, b.index)
            assert torch.equal(a.batch(torch.arange(len(a)))[0], b.batch(torch.arange(len(b)))[0])
            assert torch.equal(a.y, b.y)
