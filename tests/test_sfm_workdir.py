"""The work folder (citysplat.sfm.workdir): claimed only when it is empty or ours, images linked
under their SfM names, and the record of what its database was made from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from citysplat.layout import SfmWorkLayout
from citysplat.sfm.inputs import SfmInput, SfmInputError
from citysplat.sfm.workdir import WorkState, claim_work_dir, file_identity, link_images


def test_a_folder_with_other_files_is_never_claimed(tmp_path):
    photos = SfmWorkLayout(tmp_path / "photos")
    photos.dir.mkdir()
    (photos.dir / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(SfmInputError, match="not SfM scratch") as caught:
        claim_work_dir(photos)
    assert "\n" not in str(caught.value)
    assert [p.name for p in photos.dir.iterdir()] == ["holiday.jpg"]
    fresh = SfmWorkLayout(tmp_path / "new" / "work")
    claim_work_dir(fresh)
    assert fresh.marker.is_file()
    (fresh.dir / "leftover").write_text("an earlier run's")
    claim_work_dir(fresh)  # ours: claimed again
    assert (fresh.dir / "leftover").exists()


def test_images_are_linked_under_their_names_and_stale_links_go(shared_data, tmp_path):
    lund = shared_data / "lund" / "images"
    work = SfmWorkLayout(tmp_path / "work")
    link_images([SfmInput("a/01.jpg", lund / "01.jpg"), SfmInput("02.jpg", lund / "02.jpg")],
                work.images_dir)
    linked = work.images_dir / "a" / "01.jpg"
    assert linked.read_bytes() == (lund / "01.jpg").read_bytes()
    assert os.path.realpath(linked) == str((lund / "01.jpg").resolve())
    link_images([SfmInput("03.jpg", lund / "03.jpg")], work.images_dir)
    assert sorted(p.name for p in work.images_dir.iterdir()) == ["03.jpg"]


def test_the_state_round_trips_and_an_unreadable_one_trusts_nothing(tmp_path):
    work = SfmWorkLayout(tmp_path)
    assert WorkState.load(work) == WorkState(work.state_json)
    state = WorkState(work.state_json, features="f1", matches="m1")
    state.save()
    assert WorkState.load(work) == state
    work.state_json.write_text("{not json")
    assert WorkState.load(work).features is None
    state.save()
    state.forget()
    assert not work.state_json.exists() and state.features is state.matches is None


def test_a_touched_file_has_another_identity(tmp_path):
    path = tmp_path / "image.jpg"
    path.write_bytes(b"pixels")
    before = file_identity(path)
    os.utime(path, ns=(before[2] + 10**9, before[2] + 10**9))
    assert file_identity(path) != before and file_identity(path)[0] == str(Path(path).resolve())
