"""YouTube-8M: the 16 vertical tasks, their real counts, the shared-input split, and the prepared loader."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mtlbench.data.youtube8m import YouTube8M, read_video_meta
from mtlbench.prepare.youtube8m import VERTICALS, label_spaces, prepare_youtube8m, read_vocabulary, task_membership
from mtlbench.store.shards import check_prepared
from mtlbench.store.splits import TEST, TRAIN, VAL, compute_split
from mtlbench.store.tfrecord import iter_examples
from tests.data_support import expected, link_subset, shared

# Videos per task in all 100 shared validate shards (read + CRC-checked by test_full_counts_from_records).
FULL_COUNTS = {"Arts & Entertainment": 11473, "Games": 7201, "Autos & Vehicles": 3748, "Sports": 3715,
               "Food & Drink": 1233, "Computers & Electronics": 2186, "Business & Industrial": 2073,
               "Pets & Animals": 1144, "Hobbies & Leisure": 1550, "Beauty & Fitness": 1031, "Shopping": 1022,
               "Internet & Telecom": 553, "Home & Garden": 675, "Science": 780, "Travel": 436,
               "Law & Government": 340}
# shared/data/youtube8m/PROVENANCE.md: videos per Vertical1 in shards 0000-0031.
PROVENANCE_32 = {"Arts & Entertainment": 3774, "Games": 2303, "Autos & Vehicles": 1239, "Sports": 1205,
                 "Computers & Electronics": 730, "Business & Industrial": 701, "Hobbies & Leisure": 520,
                 "Food & Drink": 405, "Pets & Animals": 395, "Beauty & Fitness": 338, "Shopping": 317,
                 "Science": 249, "Home & Garden": 224, "Internet & Telecom": 199, "Travel": 152,
                 "Law & Government": 118}
CLASSES = [525, 734, 466, 167, 278, 302, 259, 150, 132, 86, 116, 26, 120, 116, 48, 32]
SUBSET = [f"validate{i:04d}.tfrecord" for i in range(10)]


def read_labels(files):
    ids, ptr, idx = [], [0], []
    for f in files:
        for _, _, ex in iter_examples(f):
            ids.append(ex["id"][1][0])
            idx.extend(ex["labels"][1].tolist())
            ptr.append(len(idx))
    return ids, np.array(ptr), np.array(idx)


def vertical_counts(files):
    vocab = read_vocabulary(shared("youtube8m") / "vocabulary.csv")
    _, ptr, idx = read_labels(files)
    member = task_membership(ptr, idx, label_spaces(vocab), len(vocab))
    return dict(zip(VERTICALS, member.sum(axis=0).tolist())), len(ptr) - 1


def test_label_spaces_follow_the_paper():
    vocab = read_vocabulary(shared("youtube8m") / "vocabulary.csv")
    spaces = label_spaces(vocab)
    assert [len(s) for s in spaces] == CLASSES and sum(CLASSES) == 3557
    assert all(s == sorted(s) for s in spaces)
    assert vocab[spaces[1][0]][2] == "Games" and vocab[0][1] == "Game"


def test_vertical_counts_of_the_first_32_shards_match_provenance():
    folder = shared("youtube8m") / "video_level"
    counts, n = vertical_counts([folder / f"validate{i:04d}.tfrecord" for i in range(32)])
    assert n == 9461 and counts == PROVENANCE_32


def test_full_counts_from_records():
    counts, n = vertical_counts(sorted((shared("youtube8m") / "video_level").glob("*.tfrecord")))
    assert n == 28_792 and counts == FULL_COUNTS


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    root = tmp_path_factory.mktemp("yt")
    src = link_subset(shared("youtube8m") / "video_level", root / "raw", SUBSET)
    out = prepare_youtube8m(src, shared("youtube8m") / "vocabulary.csv", root / "prepared", seed=0)
    return src, out


def test_manifest_records_sources_counts_and_split(subset):
    src, out = subset
    m = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in m["tasks"]] == list(VERTICALS)
    assert m["videos_read"] == sum(m["records_per_file"].values()) == 2950
    assert len(m["sources"]["files"]) == 11 and all(len(f["sha256"]) == 64 for f in m["sources"]["files"])
    sizes = m["split"]["schemes"]["default"]["sizes"]
    assert sum(sizes.values()) == 2950 and sizes["train"] == round(0.7 * 2950)
    for t in m["tasks"]:
        c = t["counts"]["default"]
        assert c["all"] == c["train"] + c["val"] + c["test"] > 0
    counts, _ = vertical_counts(sorted(src.glob("*.tfrecord")))
    assert {t["name"]: t["counts"]["default"]["all"] for t in m["tasks"]} == counts


def test_loaded_tasks_match_the_raw_labels(subset):
    src, out = subset
    data = YouTube8M.load(YouTube8M.Options(), 0, out)
    assert data.info.input_mode == "shared" and data.info.primary_metric == "map@10"
    assert [t.n_classes for t in data.info.tasks] == CLASSES
    ids, ptr, idx = read_labels(sorted(src.glob("*.tfrecord")))
    vocab = read_vocabulary(shared("youtube8m") / "vocabulary.csv")
    spaces = label_spaces(vocab)
    x_all = data.split("train")[0].x
    assert x_all.shape == (len(ids), 1152) and x_all.dtype == torch.float32
    for t, space in enumerate(spaces):
        pos = {v: c for c, v in enumerate(space)}
        for s in ("train", "val", "test"):
            split = data.split(s)[t]
            for row, target in zip(split.index.tolist(), split.y):
                want = sorted(pos[v] for v in idx[ptr[row]:ptr[row + 1]] if v in pos)
                assert want and torch.nonzero(target).flatten().tolist() == want


def test_inputs_are_rgb_then_audio_exactly(subset):
    src, out = subset
    data = YouTube8M.load(YouTube8M.Options(), 0, out)
    _, _, ex = next(iter_examples(src / SUBSET[0]))
    row0 = data.split("train")[0].x[0].numpy()
    assert np.array_equal(row0, np.concatenate([ex["mean_rgb"][1], ex["mean_audio"][1]]))


def test_no_test_video_is_trained_on_by_any_task(subset):
    _, out = subset
    data = YouTube8M.load(YouTube8M.Options(), 0, out)
    rows = {s: set() for s in ("train", "val", "test")}
    for s in rows:
        for split in data.split(s):
            rows[s] |= set(split.index.tolist())
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["val"] and not rows["val"] & rows["test"]
    meta = read_video_meta(sorted(out.glob("videos-*.h5")))
    ids = meta["id"]
    assert not {ids[r] for r in rows["train"]} & {ids[r] for r in rows["test"]}


def test_same_seed_same_split_other_seed_other_split(subset, tmp_path):
    src, out = subset
    again = prepare_youtube8m(src, shared("youtube8m") / "vocabulary.csv", tmp_path / "again", seed=0)
    other = prepare_youtube8m(src, shared("youtube8m") / "vocabulary.csv", tmp_path / "other", seed=1)
    code = {p: YouTube8M.load(YouTube8M.Options(), s, p).split("test")[0].index.tolist()
            for p, s in ((out, 0), (again, 0), (other, 1))}
    assert code[out] == code[again] and code[out] != code[other]
    # a spec's split_seed re-draws the recorded scheme: identical to preparing with that seed
    redrawn = YouTube8M.load(YouTube8M.Options(), 1, out)
    assert redrawn.split("test")[0].index.tolist() == code[other]
    assert redrawn.info.metadata["split_recomputed"] is True


def test_stored_split_equals_the_scheme_recomputed(subset):
    _, out = subset
    m = json.loads((out / "manifest.json").read_text())
    meta = read_video_meta(sorted(out.glob("videos-*.h5")))
    import h5py
    with h5py.File(out / "split.h5") as h5:
        stored = h5["split/default"][()]
    assert np.array_equal(stored, compute_split(m["split"]["schemes"]["default"], 0, keys=meta["id"]))
    assert set(np.unique(stored)) == {TRAIN, VAL, TEST}


def test_streaming_gives_the_same_batches(subset):
    _, out = subset
    mem = YouTube8M.load(YouTube8M.Options(memory="memory"), 0, out)
    lazy = YouTube8M.load(YouTube8M.Options(memory="stream"), 0, out)
    rows = torch.tensor([5, 0, 17, 5, 3])
    for t in (0, 15):
        a, b = mem.split("train")[t].batch(rows), lazy.split("train")[t].batch(rows)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_paper_split_with_train_and_validate_partitions(tmp_path):
    """Official partitions in separate folders (the partition read from the folder name): train trains,
    validate is halved into val / test -- through the CLI with two --src."""
    from typer.testing import CliRunner

    from mtlbench.cli.prepare import prepare_app
    folder = shared("youtube8m") / "video_level"
    for part, ids in (("train", range(3)), ("validate", range(3, 5))):
        (tmp_path / part).mkdir()
        for i in ids:
            (tmp_path / part / f"part-{i:04d}.tfrecord").symlink_to(folder / f"validate{i:04d}.tfrecord")
    out = tmp_path / "p"
    result = CliRunner().invoke(prepare_app, ["youtube8m", "--src", str(tmp_path / "train"), "--src",
                                              str(tmp_path / "validate"), "--vocabulary",
                                              str(shared("youtube8m") / "vocabulary.csv"), "--out", str(out),
                                              "--no-progress"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["metadata"]["split_mode"] == "paper" and m["split"]["schemes"]["default"]["scheme"] == "partition"
    assert "--src " + str(tmp_path / "train") + " --src " + str(tmp_path / "validate") in m["prepare_command"]
    n_train = sum(v for k, v in m["records_per_file"].items() if k.startswith("train/"))
    assert n_train == 284 + 305 + 313
    sizes = m["split"]["schemes"]["default"]["sizes"]
    assert sizes["train"] == n_train and abs(sizes["val"] - sizes["test"]) <= 1
    meta = read_video_meta(sorted(out.glob("videos-*.h5")))
    with __import__("h5py").File(out / "split.h5") as h5:
        codes = h5["split/default"][()]
    assert np.array_equal(codes == TRAIN, meta["partition"] == 0)


def test_check_path_accepts_complete_and_names_missing_shards(subset, tmp_path):
    _, out = subset
    assert YouTube8M.check_path(out) is None
    assert "does not exist" in YouTube8M.check_path(tmp_path / "nowhere")
    assert check_prepared(out, "omniglot") == f"{out} holds a prepared 'youtube8m' dataset, not omniglot"


def test_full_prepare_all_100_shards(tmp_path):
    """All 28,792 videos, every CRC checked; ~6 s on 2 cores, so part of the default run."""
    yt = shared("youtube8m")
    out = prepare_youtube8m(yt / "video_level", yt / "vocabulary.csv", tmp_path / "yt", seed=0)
    m = json.loads((out / "manifest.json").read_text())
    assert m["videos_read"] == 28_792 and len(m["records_per_file"]) == 100
    assert {t["name"]: t["counts"]["default"]["all"] for t in m["tasks"]} == FULL_COUNTS
    want = expected("youtube8m")
    assert m["videos_in_no_task"] == want["videos_in_no_task"]
    assert m["split"]["schemes"]["default"]["sizes"] == want["split_sizes"]
    assert [{"name": t["name"], "classes": t["n_classes"], "videos": t["counts"]["default"]["all"],
             **{k: t["counts"]["default"][k] for k in ("train", "val", "test")}} for t in m["tasks"]] == want["tasks"]
    assert {f["file"]: f["sha256"] for f in m["sources"]["files"]} == want["sources_sha256"]
    data = YouTube8M.load(YouTube8M.Options(), 0, out)
    assert sum(len(s) for s in data.split("train")) + sum(len(s) for s in data.split("test")) + \
        sum(len(s) for s in data.split("val")) == sum(FULL_COUNTS.values())


def test_vocabulary_must_have_the_columns(tmp_path):
    bad = tmp_path / "vocab.csv"
    with open(bad, "w", newline="") as f:
        csv.writer(f).writerows([["Index", "Name"], [0, "Game"]])
    from mtlbench.errors import DataError
    with pytest.raises(DataError, match="no column Vertical1"):
        read_vocabulary(bad)
