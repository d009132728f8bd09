"""bridge.paths: `inside` keeps every name from a message in its folder; output names built from
hostile job ids and prompts cannot leave the output folder."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.osc.addresses import JOB_ID
from bridge.paths import PathRefused, inside, output_name


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.wav").write_bytes(b"x")
    (folder / "sub").mkdir()
    (tmp_path / "secret.wav").write_bytes(b"secret")
    (folder / "link-out.wav").symlink_to(tmp_path / "secret.wav")
    (folder / "dir-out").symlink_to(tmp_path)
    (folder / "link-in.wav").symlink_to(folder / "clip.wav")
    (folder / "loop-a").symlink_to(folder / "loop-b")
    (folder / "loop-b").symlink_to(folder / "loop-a")
    return folder


@pytest.mark.parametrize("name", [
    "", "..", "../secret.wav", "sub/../../secret.wav", "/etc/passwd", "//etc/passwd",
    "~", "~/secret.wav", "~root/.ssh/id_rsa", "clip.wav\x00.txt", "\x00", "\\secret.wav",
    "C:secret.wav", "link-out.wav", "dir-out/secret.wav", ".", "./",
    "sub/..", "loop-a", "x" * 256, "a/" * 2100,
])
def test_names_that_leave_the_folder_or_are_not_file_names_are_refused(folder, name):
    with pytest.raises(PathRefused):
        inside(folder, name)


@pytest.mark.parametrize(("name", "target"), [
    ("clip.wav", "clip.wav"), ("sub/../clip.wav", "clip.wav"), ("./clip.wav", "clip.wav"),
    ("link-in.wav", "clip.wav"), ("new.wav", "new.wav"), ("sub/x.wav", "sub/x.wav"),
])
def test_names_inside_resolve_inside(folder, name, target):
    assert inside(folder, name) == (folder / target).resolve()


def test_a_symlinked_folder_is_itself_the_root(tmp_path, folder):
    (tmp_path / "alias").symlink_to(folder)
    assert inside(tmp_path / "alias", "clip.wav") == (folder / "clip.wav").resolve()
    with pytest.raises(PathRefused):
        inside(tmp_path / "alias", "../secret.wav")


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=80))
def test_whatever_the_name_the_result_is_inside_or_refused(tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "any-name"
    folder.mkdir(exist_ok=True)
    try:
        path = inside(folder, name)
    except PathRefused:
        return
    assert folder.resolve() in path.parents


@settings(max_examples=300, deadline=None)
@given(job_id=st.one_of(st.from_regex(JOB_ID, fullmatch=True), st.text(max_size=80)),
       prompt=st.text(max_size=300), suffix=st.sampled_from(["wav", "flac"]))
def test_output_names_from_hostile_ids_and_prompts_stay_plain(tmp_path_factory, job_id, prompt,
                                                              suffix):
    name = output_name(job_id, prompt, suffix)
    assert os.sep not in name and ".." not in name and not name.startswith(("~", "."))
    assert len(name.encode()) <= 255
    out = tmp_path_factory.getbasetemp() / "out"
    out.mkdir(exist_ok=True)
    assert inside(out, name).parent == out.resolve()
