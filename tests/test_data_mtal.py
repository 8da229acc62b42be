"""MTAL's sources (Chars74K, COIL-20, Office-Caltech, image folders) and the mtal_related / mtal_unrelated sets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli.prepare import prepare_app
from mtlbench.data.mtal import MTALRelated, MTALUnrelated
from mtlbench.data.office_caltech import OfficeCaltech
from mtlbench.errors import DataError
from mtlbench.prepare.chars74k import choose_letters, prepare_chars74k
from mtlbench.prepare.coil20 import prepare_coil20, read_images
from mtlbench.prepare.image_folder import prepare_image_folder
from mtlbench.prepare.office_caltech import prepare_office_caltech
from tests.data_support import SHARED_DATA, provenance_table, shared

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder of prepared datasets, as the MTAL sets expect: <root>/chars74k, coil20, office_caltech."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real data {SHARED_DATA} not present")
    r = tmp_path_factory.mktemp("prepared")
    prepare_chars74k(shared("chars74k"), r / "chars74k")
    prepare_coil20(shared("coil20"), r / "coil20")
    prepare_office_caltech(shared("office_caltech10"), r / "office_caltech")
    return r


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_chars74k_counts(root):
    with np.load(shared("chars74k") / "hnd_64x64.npz") as z:
        assert len(z["labels"]) == 3410 and set(np.bincount(z["labels"]).tolist()) == {55}
    with np.load(shared("chars74k") / "fnt_28x28.npz") as z:
        assert len(z["labels"]) == 34_544
    m = manifest(root / "chars74k")
    assert [(t["name"], t["n_examples"], t["input_shape"]) for t in m["tasks"]] == [
        ("HD", 550, [1, 64, 64]), ("A", 550, [1, 64, 64]), ("a", 550, [1, 64, 64]),
        ("Typographic*", 10_160, [1, 28, 28])]
    upper, lower = m["metadata"]["letters"]["A"], m["metadata"]["letters"]["a"]
    assert (upper, lower) == choose_letters(0, None) and len(upper) == len(lower) == 10
    assert m["tasks"][1]["class_names"] == list(upper) and upper.isupper() and lower.islower()
    # 55 per class: 17 test (30%), 4 val (10% of 38), 34 train
    assert m["tasks"][0]["counts"]["default"] == {"train": 340, "val": 40, "test": 170}


def test_letters_choice_is_seeded_and_can_be_given():
    assert choose_letters(0, None) == choose_letters(0, None) != choose_letters(1, None)
    assert choose_letters(5, "JIHGFEDCBA") == ("ABCDEFGHIJ", "abcdefghij")
    with pytest.raises(DataError, match="--letters needs 10 distinct letters"):
        choose_letters(0, "abc")


def test_chars74k_images_have_ink_high(root):
    data = MTALRelated.load(MTALRelated.Options(), 0, root)
    for t in range(4):
        x, _ = data.split("train")[t].batch(torch.arange(8))
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.mean() < 0.5  # ink is the minority of pixels


def test_coil20_counts_and_orientation(root):
    images, objs, poses = read_images([shared("coil20") / "COIL20_32x32.mat"])
    assert images.shape == (1440, 32, 32) and set(np.bincount(objs)[1:].tolist()) == {72}
    assert np.array_equal(poses[:72], np.arange(72))
    m = manifest(root / "coil20")
    task = m["tasks"][0]
    assert task["name"] == "COIL-20" and task["n_examples"] == 720 and len(task["objects"]) == 10
    assert task["objects"] == m["metadata"]["objects"] == sorted(task["objects"])


def test_coil20_unprocessed_has_5_objects(tmp_path):
    out = prepare_coil20(shared("coil20"), tmp_path / "unproc", variant="unprocessed")
    task = manifest(out)["tasks"][0]
    assert task["n_examples"] == 360 and task["objects"] == [1, 2, 3, 4, 5]
    assert task["input_shape"] == [1, 416, 448] and task["objects_available"] == 5


def test_office_caltech_counts_match_provenance(root):
    expected = provenance_table("office_caltech10", r"\w+_SURF_L10\.mat", 3)
    assert expected == {"amazon_SURF_L10.mat": 958, "Caltech10_SURF_L10.mat": 1123, "dslr_SURF_L10.mat": 157,
                        "webcam_SURF_L10.mat": 295}
    m = manifest(root / "office_caltech")
    assert {t["source_file"]: t["n_examples"] for t in m["tasks"]} == expected
    assert [t["name"] for t in m["tasks"]] == ["Amazon", "Caltech", "DSLR", "Webcam"]
    data = OfficeCaltech.load(OfficeCaltech.Options(), 0, root / "office_caltech")
    amazon = [len(data.split(s)[0]) for s in ("train", "val", "test")]
    assert sum(amazon) == 958
    per_class = sum(torch.bincount(data.split(s)[0].y, minlength=10) for s in ("train", "val", "test"))
    assert per_class.tolist() == [92, 82, 94, 99, 100, 100, 99, 100, 94, 98]


def test_surf_vectors_are_standardised_with_training_statistics(root):
    data = OfficeCaltech.load(OfficeCaltech.Options(), 0, root / "office_caltech")
    train = data.split("train")[0]
    x, _ = train.batch(torch.arange(len(train)))
    assert x.shape == (len(train), 800)
    used = x.std(0) > 0
    assert torch.allclose(x.mean(0), torch.zeros(800), atol=1e-4)
    assert torch.allclose(x.std(0, unbiased=False)[used], torch.ones(int(used.sum())), atol=1e-3)
    test = data.split("test")[0]
    assert not torch.allclose(test.batch(torch.arange(len(test)))[0].mean(0), torch.zeros(800), atol=1e-4)


def test_mtal_related_set(root):
    data = MTALRelated.load(MTALRelated.Options(), 0, root)
    assert data.info.task_names == ["HD", "a", "Typographic*", "A"]
    assert data.info.metadata["groups"] == [["HD", "a"], ["Typographic*", "A"]]
    assert "Typographic*" in data.info.metadata["stand_ins"]
    assert data.info.input_mode == "per_task" and not data.info.same_input_shape
    assert MTALRelated.check_path(root) is None
    assert MTALRelated.describe(MTALRelated.Options(), 0, root).task_names == data.info.task_names


def test_mtal_unrelated_without_and_with_art(root, tmp_path):
    data = MTALUnrelated.load(MTALUnrelated.Options(), 0, root)
    assert data.info.task_names == ["HD", "COIL-20", "Amazon"]
    assert data.info.metadata["missing_tasks"] == ["Art"]
    assert data.info.metadata["groups"] == [["HD", "COIL-20"], ["Amazon"]]
    assert [t.input_shape for t in data.info.tasks] == [(1, 64, 64), (1, 32, 32), (800,)]
    # the same task keeps the same split in either set
    related = MTALRelated.load(MTALRelated.Options(), 0, root)
    assert torch.equal(related.split("test")[0].index, data.split("test")[0].index)
    art = make_image_folder(tmp_path / "home", tasks=("Art", "Clipart"))
    prepare_image_folder(art, root / "office_home", tasks=["Art"], size="16")
    try:
        full = MTALUnrelated.load(MTALUnrelated.Options(), 0, root)
        assert full.info.task_names == ["HD", "COIL-20", "Art", "Amazon"]
        assert full.info.metadata["groups"] == [["HD", "COIL-20"], ["Art", "Amazon"]]
        assert full.info.tasks[2].input_shape == (3, 16, 16)
    finally:
        import shutil
        shutil.rmtree(root / "office_home")


def test_mtal_explicit_tasks_and_bad_references(root):
    opts = MTALUnrelated.Options(tasks=["chars74k/HD", "office_caltech/Webcam"])
    assert MTALUnrelated.load(opts, 0, root).info.task_names == ["HD", "Webcam"]
    with pytest.raises(DataError, match=r"has no task 'Zebra' .has: Amazon, Caltech, DSLR, Webcam."):
        MTALUnrelated.load(MTALUnrelated.Options(tasks=["chars74k/HD", "office_caltech/Zebra"]), 0, root)
    with pytest.raises(DataError, match="nowhere does not exist"):
        MTALUnrelated.load(MTALUnrelated.Options(tasks=["chars74k/HD", "nowhere/X"]), 0, root)


def make_image_folder(root, tasks=("Art",), classes=3, per_class=10, sizes=((20, 16), (24, 18))):
    from PIL import Image
    rng = np.random.default_rng(0)
    for t in tasks:
        for c in range(classes):
            d = root / t / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_image_folder_needs_a_size_when_sizes_differ(tmp_path):
    src = make_image_folder(tmp_path / "imgs")
    result = runner.invoke(prepare_app, ["image-folder", "--src", str(src), "--out", str(tmp_path / "o"),
                                         "--no-progress"])
    assert result.exit_code == 1
    assert "task Art: images have 2 different sizes (e.g. 20x16, 24x18); pass --size" in result.output
    result = runner.invoke(prepare_app, ["image-folder", "--src", str(src), "--out", str(tmp_path / "o"),
                                         "--size", "12x10", "--mode", "L", "--no-progress"])
    assert result.exit_code == 0, result.output
    m = manifest(tmp_path / "o")
    assert m["tasks"][0]["input_shape"] == [1, 12, 10]
    assert m["tasks"][0]["class_names"] == ["class0", "class1", "class2"]
    assert "mtlbench prepare image-folder" in m["prepare_command"] and "--size 12x10" in m["prepare_command"]
    again = runner.invoke(prepare_app, ["image-folder", "--src", str(src), "--out", str(tmp_path / "o"),
                                        "--size", "12x10", "--no-progress"])
    assert again.exit_code == 2 and "already holds a prepared dataset; pass --force" in again.output


def test_cli_help_for_every_source():
    for cmd in ("youtube8m", "omniglot", "chars74k", "coil20", "office-caltech", "image-folder", "verify"):
        result = runner.invoke(prepare_app, [cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 400
