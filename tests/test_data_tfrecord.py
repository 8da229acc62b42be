"""The TFRecord reader: both CRCs of every record, the Example decoder, and errors that name the place."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli.prepare import prepare_app
from mtlbench.errors import DataError
from mtlbench.store.tfrecord import count_records, iter_examples, iter_records, masked_crc32c
from tests.data_support import YT, example, flip_byte, frame, provenance_table, record_offsets, shared, video

runner = CliRunner()


def test_crc32c_check_value_and_masking():
    import crc32c
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_decodes_every_feature_kind_packed_and_unpacked(tmp_path):
    feats = {"id": [b"ab", b"\x00\xff"], "labels": [0, 3, 300, -2], "f": np.array([1.5, -2.25, 3e9], np.float32)}
    path = tmp_path / "x.tfrecord"
    path.write_bytes(frame(example(feats, packed=True)) + frame(example(feats, packed=False)) + frame(b""))
    got = [ex for _, _, ex in iter_examples(path)]
    assert len(got) == 3 and got[2] == {}
    for ex in got[:2]:
        assert ex["id"] == ("bytes_list", [b"ab", b"\x00\xff"])
        assert ex["labels"][0] == "int64_list" and ex["labels"][1].tolist() == [0, 3, 300, -2]
        assert ex["f"][0] == "float_list" and ex["f"][1].tolist() == [1.5, -2.25, 3e9]


def test_offsets_and_numbers_follow_the_framing(tmp_path):
    path = tmp_path / "v.tfrecord"
    path.write_bytes(b"".join(frame(video(b"v%03d" % i, [i], i)) for i in range(5)))
    seen = [(i, off) for i, off, _ in iter_records(path)]
    assert seen == list(enumerate(record_offsets(path)))


def test_real_shards_every_crc_valid_and_counts_match_provenance():
    folder = shared("youtube8m") / "video_level"
    expected = provenance_table("youtube8m", r"video_level/validate\d{4}\.tfrecord", 2)
    assert len(expected) == 100
    counts = {f"video_level/{f.name}": count_records(f) for f in sorted(folder.glob("*.tfrecord"))}
    assert counts == expected
    assert sum(counts.values()) == 28_792


def test_real_records_have_the_video_level_schema():
    first = next(iter_examples(shared("youtube8m") / "video_level" / "validate0000.tfrecord"))[2]
    assert first["id"] == ("bytes_list", [b"02aa"])
    assert first["mean_rgb"][1].shape == (1024,) and first["mean_audio"][1].shape == (128,)
    assert first["labels"][0] == "int64_list" and len(first["labels"][1]) >= 1


@pytest.fixture
def shard_copy(tmp_path):
    src = shared("youtube8m") / "video_level" / "validate0000.tfrecord"
    dst = tmp_path / "raw" / "validate0000.tfrecord"
    dst.parent.mkdir()
    shutil.copyfile(src, dst)
    return dst


def test_flipped_payload_byte_names_file_record_and_offset(shard_copy):
    off = record_offsets(shard_copy)[3]
    flip_byte(shard_copy, off + 12 + 100)  # inside record 3's payload
    with pytest.raises(DataError) as e:
        list(iter_examples(shard_copy))
    assert str(e.value) == (f"{shard_copy}: record 3 at byte offset {off}: payload checksum mismatch "
                            f"(corrupt record data)")


def test_flipped_length_byte_is_caught_by_the_length_crc(shard_copy):
    off = record_offsets(shard_copy)[7]
    flip_byte(shard_copy, off + 1)
    with pytest.raises(DataError, match=rf"record 7 at byte offset {off}: length checksum mismatch"):
        count_records(shard_copy)


def test_truncated_file_names_the_last_record(shard_copy):
    offs = record_offsets(shard_copy)
    data = shard_copy.read_bytes()
    shard_copy.write_bytes(data[:offs[-1] + 500])
    with pytest.raises(DataError, match=rf"record {len(offs) - 1} at byte offset {offs[-1]}: truncated file"):
        count_records(shard_copy)
    shard_copy.write_bytes(data[:offs[-1] + 5])  # cut inside the header
    with pytest.raises(DataError, match=r"truncated file .record header needs 12 bytes, only 5 left"):
        count_records(shard_copy)


def test_payload_that_is_not_an_example_is_refused(tmp_path):
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(frame(video(b"good", [1], 0)) + frame(b"\x0a\xff\xff\xff\x0f" + b"\x00" * 8))
    with pytest.raises(DataError, match=r"record 1 at byte offset \d+: not a valid tf.train.Example"):
        list(iter_examples(path))


def test_cli_stops_on_a_corrupt_record_with_exit_1_and_writes_nothing(shard_copy, tmp_path):
    off = record_offsets(shard_copy)[10]
    flip_byte(shard_copy, off + 40)
    out = tmp_path / "prepared"
    result = runner.invoke(prepare_app, ["youtube8m", "--src", str(shard_copy.parent), "--vocabulary",
                                         str(YT / "vocabulary.csv"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert f"validate0000.tfrecord: record 10 at byte offset {off}: payload checksum mismatch" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_name("prepared.lock").exists()


def test_wrong_feature_length_is_refused(tmp_path):
    bad = example({"id": [b"abcd"], "labels": [1], "mean_rgb": np.zeros(1000, np.float32),
                   "mean_audio": np.zeros(128, np.float32)})
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "validate0000.tfrecord").write_bytes(frame(bad))
    result = runner.invoke(prepare_app, ["youtube8m", "--src", str(raw), "--vocabulary",
                                         str(shared("youtube8m") / "vocabulary.csv"), "--out", str(tmp_path / "o"),
                                         "--no-progress"])
    assert result.exit_code == 1
    assert "record 0 at byte offset 0: feature 'mean_rgb' has 1000 values, expected 1024" in result.output

