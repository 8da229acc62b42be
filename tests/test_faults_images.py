"""`prepare image-folder` on the image folders users bring: a zero-byte, truncated, byte-flipped or non-image
file under an image name stops the conversion with one line naming the file (exit 1: raw data found damaged
while converting; the `.partial` folder is kept for the rerun), files without an image extension are not
read, a class of one image and class names outside ASCII prepare and train like any other."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app

runner = CliRunner()


def image_folder(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / "Shapes" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "Shapes" / name / f"{i}.png")
    return root


def prepare(src: Path, out: Path):
    return runner.invoke(app, ["prepare", "image-folder", "--src", str(src), "--out", str(out), "--no-progress"])


def flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[41] ^= 0xFF  # inside the compressed pixel data
    path.write_bytes(bytes(raw))


DAMAGE = {
    "zero bytes": (lambda p: p.write_bytes(b""), "cannot identify image file '{p}'"),
    "text under an image name": (lambda p: p.write_text("not an image"), "cannot identify image file '{p}'"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "image file is truncated"),
    "a byte flipped": (flip, "broken data stream when reading image file"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_image_stops_the_conversion_in_one_line(damage, tmp_path):
    src = image_folder(tmp_path / "src", {"circle": 8, "square": 8})
    harm, why = DAMAGE[damage]
    bad = src / "Shapes" / "circle" / "3.png"
    harm(bad)
    result = prepare(src, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: not a readable image ({why.format(p=bad)})"], result.output
    assert not (tmp_path / "out").exists()  # only the resumable .partial folder


def test_other_files_one_image_classes_and_non_ascii_names_prepare_and_train(tmp_path):
    src = image_folder(tmp_path / "src", {"Café": 8, "日本": 8, "one": 1})
    (src / "Shapes" / "Café" / "notes.txt").write_text("not read")
    (src / "Shapes" / "README").write_text("not a class")
    out = tmp_path / "prepared"
    result = prepare(src, out)
    assert result.exit_code == 0, result.output
    task = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["tasks"][0]
    assert task["class_names"] == ["Café", "one", "日本"] and sum(task["counts"]["default"].values()) == 17
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: images\ndata: {{dataset: image_folder, path: {out}}}\n"
                    "backbone: {kind: mlp, hidden: [8]}\nmethods: [{name: stl}]\n"
                    "training: {iterations: 5, batch_per_task: 8, eval_every: 5, threads: 1}\n"
                    f"output: {{dir: {tmp_path / 'runs'}}}\n", encoding="utf-8")
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0, result.output
