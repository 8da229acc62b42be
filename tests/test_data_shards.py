"""The prepared-directory format: manifest checks, corruption detection, atomic writes, resume after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli.prepare import prepare_app
from mtlbench.data.image_folder import ImageFolder
from mtlbench.errors import DataError
from mtlbench.store.shards import PROGRESS, check_prepared, partial_dir, read_manifest
from tests.data_support import flip_byte, write_toy

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def toy(tmp_path):
    return write_toy(tmp_path / "toy")


def load(path, **opts):
    return ImageFolder.load(ImageFolder.Options(**opts), 0, path)


def test_manifest_lists_every_shard_with_its_checksum(toy):
    m = read_manifest(toy)
    assert m["format"] == "mtlbench-prepared" and m["format_version"] == 1
    assert [s["file"] for s in m["shards"]] == ["task-00.h5", "task-01.h5", "task-02.h5"]
    assert [t["input_shape"] for t in m["tasks"]] == [[1, 8, 8], [1, 9, 8], [1, 10, 8]]
    assert not partial_dir(toy).exists() and not (toy / PROGRESS).exists()
    with h5py.File(toy / "task-00.h5") as h5:
        ds = h5["x"]
        assert ds.fletcher32 and ds.compression == "gzip" and ds.chunks[1:] == ds.shape[1:]


def test_heterogeneous_inputs_load_as_float_batches(toy):
    data = load(toy)
    assert data.info.input_mode == "per_task" and not data.info.same_input_shape
    x, y = data.split("train")[1].batch(torch.arange(4))
    assert x.dtype == torch.float32 and x.shape == (4, 1, 9, 8) and x.min() >= 0 and x.max() <= 1
    with h5py.File(toy / "task-01.h5") as h5:
        rows = data.split("train")[1].index[:4].numpy()
        assert torch.allclose(x, torch.from_numpy(h5["x"][()][rows]).float() / 255)
        assert torch.equal(y, torch.from_numpy(h5["y"][()][rows]))


def chunk_offset(path: Path) -> int:
    with h5py.File(path) as h5:
        return h5["x"].id.get_chunk_info(0).byte_offset


def test_flipped_byte_inside_a_chunk_is_caught_both_ways(toy):
    shard = toy / "task-01.h5"
    flip_byte(shard, chunk_offset(shard) + 7)
    assert check_prepared(toy, "image_folder") == (f"{shard}: shard sha256 does not match the manifest "
                                                   f"(corrupt); re-run prepare with --force")
    with pytest.raises(DataError, match=r"task-01.h5: shard CRC32C does not match the manifest"):
        load(toy)
    with pytest.raises(DataError, match=r"task-01.h5: shard sha256 does not match the manifest"):
        load(toy, verify="sha256")
    # without the whole-file checksum, HDF5's fletcher32 still refuses the chunk: never wrong data
    with pytest.raises(DataError, match=r"task-01.h5: dataset 'x' cannot be read: corrupt shard"):
        load(toy, verify="none")
    result = runner.invoke(prepare_app, ["verify", str(toy)])  # bad input, as validate and train say: exit 2
    assert result.exit_code == 2 and "sha256 does not match" in result.output


def test_fletcher32_is_checked_when_streaming(toy):
    shard = toy / "task-00.h5"
    flip_byte(shard, chunk_offset(shard) + 3)
    data = load(toy, verify="none", memory="stream")
    with pytest.raises(DataError, match=r"task-00.h5: dataset 'x' cannot be read: corrupt shard"):
        data.split("train")[0].batch(torch.arange(len(data.split("train")[0])))


def test_deleted_shard_is_named(toy):
    (toy / "task-02.h5").unlink()
    reason = f"{toy / 'task-02.h5'}: shard listed in the manifest is missing; re-run prepare with --force"
    assert ImageFolder.check_path(toy) == reason
    with pytest.raises(DataError, match=r"task-02.h5: shard listed in the manifest is missing"):
        load(toy)
    result = runner.invoke(prepare_app, ["verify", str(toy)])
    assert result.exit_code == 2 and "task-02.h5: shard listed in the manifest is missing" in result.output


def test_flipped_metadata_byte_is_caught(toy):
    shard = toy / "task-00.h5"
    flip_byte(shard, 60)  # inside the superblock / root object header, not a data chunk
    with pytest.raises(DataError, match=r"task-00.h5"):
        load(toy, verify="none")


def test_truncated_shard_and_missing_manifest(toy):
    shard = toy / "task-00.h5"
    shard.write_bytes(shard.read_bytes()[:1000])
    assert "task-00.h5: shard is 1000 bytes, the manifest says" in ImageFolder.check_path(toy)
    (toy / "manifest.json").unlink()
    assert ImageFolder.check_path(toy) == f"{toy} has no manifest.json: not a complete prepared dataset"


def test_other_format_version_is_refused(toy):
    m = json.loads((toy / "manifest.json").read_text())
    m["format_version"] = 99
    (toy / "manifest.json").write_text(json.dumps(m))
    assert "format version 99 is not 1" in ImageFolder.check_path(toy)


def test_refuses_to_overwrite_without_force(toy, tmp_path):
    before = read_manifest(toy)["shards"]
    with pytest.raises(DataError, match="already holds a prepared dataset; pass --force"):
        write_toy(toy, seed=1)
    assert read_manifest(toy)["shards"] == before
    write_toy(toy, seed=1, force=True)
    assert read_manifest(toy)["split"]["seed"] == 1 and not toy.with_name("toy.old").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"is not empty and holds no manifest.json"):
        write_toy(foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


KILLER = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
import mtlbench.store.shards as shards
from tests.data_support import write_toy
kill_after, mid_shard = int(sys.argv[2]), sys.argv[3] == "mid"
real_write, real_array = shards.PreparedWriter.write_shard, shards.write_array
def write_shard(self, *a, **k):
    if mid_shard and len(self.done) == kill_after:
        def dying_array(h5, name, arr):   # die halfway through writing this shard's datasets
            real_array(h5, name, arr)
            os.kill(os.getpid(), signal.SIGKILL)
        shards.write_array = dying_array
    entry = real_write(self, *a, **k)
    if not mid_shard and len(self.done) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return entry
shards.PreparedWriter.write_shard = write_shard
write_toy(Path(sys.argv[1]), n_tasks=5)
"""


@pytest.mark.parametrize("where", ["between", "mid"])
def test_killed_prepare_leaves_nothing_complete_and_the_next_run_finishes(tmp_path, where):
    out = tmp_path / "toy"
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER.format(repo=str(REPO))))
    proc = subprocess.run([sys.executable, str(script), str(out), "2", where], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists()
    reason = ImageFolder.check_path(out)
    assert "an interrupted prepare left" in reason and str(partial_dir(out)) in reason
    with pytest.raises(DataError):
        load(out)
    progress = json.loads((partial_dir(out) / PROGRESS).read_text())
    assert sorted(progress["shards"]) == ["task-00.h5", "task-01.h5"]
    if where == "mid":
        assert (partial_dir(out) / "task-02.h5.tmp").exists()
    write_toy(out, n_tasks=5)  # the same request resumes
    assert ImageFolder.check_path(out) is None and not partial_dir(out).exists()
    fresh = write_toy(tmp_path / "fresh", n_tasks=5)
    a, b = load(out), load(fresh)
    for s in ("train", "val", "test"):
        for ta, tb in zip(a.split(s), b.split(s)):
            assert torch.equal(ta.index, tb.index) and torch.equal(ta.y, tb.y)
            assert torch.equal(ta.batch(torch.arange(len(ta)))[0], tb.batch(torch.arange(len(tb)))[0])


def test_resume_keeps_finished_shards_and_a_changed_request_restarts(tmp_path):
    import mtlbench.store.shards as shards
    out = tmp_path / "toy"
    part = partial_dir(out)
    writer = shards.PreparedWriter(out, {"r": 1})
    writer.write_shard("a.h5", {"v": np.arange(3)})
    again = shards.PreparedWriter(out, {"r": 1})
    assert again.has("a.h5") and again.resumed == 1
    flip_byte(part / "a.h5", 100)  # a damaged finished shard is redone, not trusted
    assert not shards.PreparedWriter(out, {"r": 1}).has("a.h5")
    shards.PreparedWriter(out, {"r": 1}).write_shard("a.h5", {"v": np.arange(3)})
    other = shards.PreparedWriter(out, {"r": 2})
    assert other.resumed == 0 and list(part.iterdir()) == [part / PROGRESS]


def test_split_seed_redraws_and_splits_are_disjoint_and_stratified(toy):
    options = ImageFolder.Options()
    a, b, c = load(toy), ImageFolder.load(options, 0, toy), ImageFolder.load(options, 3, toy)
    for t in range(3):
        keys = {s: set(a.split(s)[t].index.tolist()) for s in ("train", "val", "test")}
        assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
        assert sum(map(len, keys.values())) == 60
        assert a.split("test")[t].index.tolist() == b.split("test")[t].index.tolist()
        assert a.split("test")[t].index.tolist() != c.split("test")[t].index.tolist()
        # 20 per class: 6 test, 1 val (10% of 14), 13 train
        assert torch.bincount(a.split("test")[t].y).tolist() == [6, 6, 6]
        assert torch.bincount(a.split("val")[t].y).tolist() == [1, 1, 1]


def test_a_flipped_byte_anywhere_never_gives_wrong_data(toy, tmp_path):
    """Even with the whole-file checksum off, HDF5's own checksums (fletcher32 on chunks, checksummed
    metadata of the latest file format) leave two outcomes for any flipped byte: a DataError, or the
    same data (the byte was unused padding)."""
    import shutil

    def everything(path):
        data = load(path, verify="none")
        return [torch.cat([s.batch(torch.arange(len(s)))[0].flatten() for s in data.split(k)]) for k in
                ("train", "val", "test")] + [torch.cat([s.y for s in data.split(k)]) for k in ("train", "val", "test")]

    reference = everything(toy)
    size = (toy / "task-00.h5").stat().st_size
    outcomes = {"error": 0, "same": 0}
    for offset in np.linspace(0, size - 1, 41).astype(int):
        copy = tmp_path / f"flip{offset}"
        shutil.copytree(toy, copy)
        flip_byte(copy / "task-00.h5", int(offset))
        try:
            got = everything(copy)
        except DataError:
            outcomes["error"] += 1
            continue
        assert all(torch.equal(a, b) for a, b in zip(reference, got)), f"wrong data after flipping byte {offset}"
        outcomes["same"] += 1
    assert outcomes["error"] >= 10  # the flips did hit checked bytes


def test_a_second_concurrent_prepare_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "toy"
    lock = out.with_name("toy.lock")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(str(sleeper.pid))
        with pytest.raises(DataError, match=rf"another prepare .process {sleeper.pid}. is writing it"):
            write_toy(out)
    finally:
        sleeper.kill()
        sleeper.wait()
    write_toy(out)  # the holder is gone: its lock is stale
    assert ImageFolder.check_path(out) is None and not lock.exists()


SPEC = """
name: toy
data:
  dataset: image_folder
  path: {path}
backbone: {{channels: [4], dense: [8]}}
methods:
  - name: stl
training: {{iterations: 2, batch_per_task: 4, eval_every: 1, threads: 1}}
output: {{dir: {out}}}
"""


def test_validate_checks_the_prepared_directory(toy, write_spec, tmp_path):
    from mtlbench.cli import app
    spec = write_spec(SPEC.format(path=toy, out=tmp_path / "runs"))
    ok = runner.invoke(app, ["validate", str(spec)])
    assert ok.exit_code == 0, ok.output
    assert "3 tasks, per_task inputs" in ok.output
    (toy / "task-01.h5").unlink()
    bad = runner.invoke(app, ["validate", str(spec)])
    assert bad.exit_code == 2
    assert "data.path" in bad.output and "task-01.h5: shard listed in the manifest is missing" in bad.output
