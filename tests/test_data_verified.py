"""The verification memory of a prepared directory: a second load hashes nothing, a touched or rewritten shard
is hashed again, a corrupted one still fails, a read-only data directory falls back to the user cache."""
from __future__ import annotations

import json
import os

import pytest

from mtlbench.data.image_folder import ImageFolder
from mtlbench.errors import DataError
from mtlbench.store import shards
from mtlbench.store.manifest_check import write_seal
from mtlbench.store.verified import CACHE_NAME, cache_locations
from tests.data_support import flip_byte, write_toy


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLBENCH_CACHE_DIR", str(tmp_path / "user-cache"))
    return write_toy(tmp_path / "toy")


@pytest.fixture
def hashed(monkeypatch):
    """The names of the shards hashed, in order, by either checksum."""
    calls: list[str] = []
    for name in ("sha256_file", "crc32c_file"):
        real = getattr(shards, name)
        monkeypatch.setattr(shards, name, lambda p, *a, _real=real, **k: calls.append(p.name) or _real(p, *a, **k))
    return calls


def load(path):
    return ImageFolder.load(ImageFolder.Options(), 0, path)


def shard_names(path):
    return [s["file"] for s in shards.read_manifest(path)["shards"]]


def test_a_second_load_and_validate_hash_nothing(toy, hashed):
    load(toy)
    assert sorted(hashed) == sorted(shard_names(toy))  # the first load hashed every shard (CRC32C)
    hashed.clear()
    load(toy)
    assert hashed == []
    assert ImageFolder.check_path(toy) is None  # validate asks for sha256: stronger than what passed
    assert sorted(hashed) == sorted(shard_names(toy))
    hashed.clear()
    assert ImageFolder.check_path(toy) is None and hashed == []
    load(toy)  # a sha256 pass answers a CRC32C request
    assert hashed == []
    memory = json.loads((toy / CACHE_NAME).read_text())
    assert set(memory["shards"]) == set(shard_names(toy))
    assert {e["check"] for e in memory["shards"].values()} == {"sha256"}


def test_a_touched_shard_is_hashed_again_and_only_it(toy, hashed):
    load(toy)
    hashed.clear()
    first = shard_names(toy)[0]
    st = os.stat(toy / first)
    os.utime(toy / first, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load(toy)
    assert hashed == [first]


def test_a_corrupted_shard_still_fails_even_with_its_old_mtime(toy, hashed):
    load(toy)
    target = toy / shard_names(toy)[1]
    st = os.stat(target)
    flip_byte(target, st.st_size // 2)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: the inode change time differs
    with pytest.raises(DataError, match=r"CRC32C does not match|cannot be read"):
        load(toy)
    assert "sha256 does not match" in ImageFolder.check_path(toy)


def test_another_manifest_forgets_what_was_verified(toy, hashed):
    load(toy)
    hashed.clear()
    manifest = toy / shards.MANIFEST
    manifest.write_text(manifest.read_text() + "\n")  # same content for the loader, other bytes: another manifest
    write_seal(toy)  # as prepare would seal a new manifest
    load(toy)
    assert sorted(hashed) == sorted(shard_names(toy))


def test_a_data_directory_that_refuses_writes_uses_the_user_cache(toy, hashed, tmp_path):
    (toy / CACHE_NAME).mkdir()  # writing the memory beside the data now fails, as on a read-only mount
    load(toy)
    hashed.clear()
    user_file = cache_locations(toy)[1]
    assert user_file.is_relative_to(tmp_path / "user-cache") and user_file.exists()
    load(toy)
    assert hashed == []


def test_prepare_verify_always_hashes(toy, hashed):
    load(toy)
    hashed.clear()
    shards.verify_prepared(toy)
    assert sorted(hashed) == sorted(shard_names(toy))
