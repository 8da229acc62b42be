"""data_prep/*.yaml (the expected result of each prepare command) agree with shared/data's PROVENANCE.md and
with what the code computes."""
from __future__ import annotations

import json

import pytest

from mtlbench.prepare.chars74k import prepare_chars74k
from mtlbench.prepare.coil20 import prepare_coil20
from mtlbench.prepare.office_caltech import prepare_office_caltech
from tests.data_support import assert_matches_expected, expected, provenance_table, shared

SHA_COLUMN = {"youtube8m": 3, "omniglot": 2, "chars74k": 2, "coil20": 2, "office_caltech10": 2}


def provenance_sha256(folder: str) -> dict[str, str]:
    out = {}
    for line in (shared(folder) / "PROVENANCE.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        for c in cells[1:]:
            if len(c) == 64 and all(ch in "0123456789abcdef" for ch in c):
                out[cells[0].removeprefix("video_level/")] = c
    return out


@pytest.mark.parametrize("name,folder", [("youtube8m", "youtube8m"), ("omniglot", "omniglot"),
                                         ("chars74k", "chars74k"), ("coil20", "coil20"),
                                         ("office_caltech", "office_caltech10")])
def test_expected_source_checksums_are_the_provenance_ones(name, folder):
    prov = provenance_sha256(folder)
    want = expected(name)["sources_sha256"]
    assert want and all(prov[f] == sha for f, sha in want.items())


def test_youtube8m_expectations_add_up():
    want = expected("youtube8m")
    assert want["videos_read"] == 28_792 == sum(want["split_sizes"].values())
    assert sum(provenance_table("youtube8m", r"video_level/validate\d{4}\.tfrecord", 2).values()) == 28_792
    for t in want["tasks"]:
        assert t["videos"] == t["train"] + t["val"] + t["test"]
    assert [t["classes"] for t in want["tasks"]] == [525, 734, 466, 167, 278, 302, 259, 150, 132, 86, 116, 26,
                                                     120, 116, 48, 32]


@pytest.mark.parametrize("name,prepare,folder", [("chars74k", prepare_chars74k, "chars74k"),
                                                 ("coil20", prepare_coil20, "coil20"),
                                                 ("office_caltech", prepare_office_caltech, "office_caltech10")])
def test_prepare_gives_the_expected_manifest(name, prepare, folder, tmp_path):
    out = prepare(shared(folder), tmp_path / name)
    manifest = json.loads((out / "manifest.json").read_text())
    assert_matches_expected(manifest, name)
    assert manifest["prepare_command"] == ""  # library calls record no command; the CLI records its own
