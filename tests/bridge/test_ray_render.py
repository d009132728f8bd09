"""`indie render --ray`: variations as Ray tasks on a local 2-CPU cluster.

The same presets rendered through Ray and in one process give the same files, byte for byte
(same seeds, same audio, same sidecars); a failed task is retried and reported, never dropped.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.presets import load_preset_file
from bridge.ray_render import RayRenderConfig, plan_jobs, render_on_ray
from tests.bridge.conftest import ROOT
from tests.bridge.fake_engine import FakeEngine

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_session():
    """One local cluster for the module (2 CPUs); the workers can import this test module."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join([str(ROOT), str(HERE)])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def short_presets(folder: Path) -> list[Path]:
    """Two shipped presets cut to half-second clips: one seeded, one with its melody."""
    folder.mkdir()
    shutil.copytree(ROOT / "presets" / "melodies", folder / "melodies")
    organ = (ROOT / "presets" / "church-organ.yaml").read_text()
    (folder / "organ.yaml").write_text(organ.replace("bars: 4", "seconds: 0.5"))
    folk = (ROOT / "presets" / "folk-tune.yaml").read_text()
    (folder / "folk.yaml").write_text(folk.replace("seconds: 9.6", "seconds: 0.5"))
    return [folder / "organ.yaml", folder / "folk.yaml"]


def test_ray_renders_the_same_files_as_one_process(ray_session, tmp_path):
    presets = [str(p) for p in short_presets(tmp_path / "presets")]
    assert main(["render", *presets, "--variations", "2", "--out", str(tmp_path / "one")]) == 0
    assert main(["render", *presets, "--variations", "2", "--out", str(tmp_path / "ray"),
                 "--ray"]) == 0
    one, ray = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "ray").iterdir())
    assert [p.name for p in ray] == [p.name for p in one]
    assert [p.name for p in one if p.suffix == ".wav"] == [
        "folk-000-s100.wav", "folk-001-s101.wav", "organ-000-s7.wav", "organ-001-s8.wav"]
    for a, b in zip(one, ray, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name  # audio and sidecars


@dataclass(frozen=True)
class FlakySource:
    """A fake engine that fails on some seeds: once (an exception, or the worker process dies)
    or always. A marker file per seed remembers the first failure across worker processes."""

    markers: str
    raise_once: int
    die_once: int
    always: int

    def load(self) -> FlakyEngine:
        return FlakyEngine(Path(self.markers), self)


class FlakyEngine(FakeEngine):
    def __init__(self, markers: Path, source: FlakySource) -> None:
        super().__init__(step_seconds=0.0)
        self.markers, self.source = markers, source

    def generate(self, prompt, **kwargs):
        seed = kwargs["seed"]
        first = not (self.markers / str(seed)).exists()
        (self.markers / str(seed)).touch()
        if seed == self.source.always or (seed == self.source.raise_once and first):
            raise RuntimeError(f"no luck with seed {seed}")
        if seed == self.source.die_once and first:
            os._exit(3)  # the worker process dies mid-task
        return super().generate(prompt, **kwargs)


def test_failed_tasks_are_retried_and_reported(ray_session, tmp_path, capsys):
    preset = load_preset_file(short_presets(tmp_path / "presets")[0])  # seeds 7, 8, ...
    jobs = plan_jobs([preset], 5)
    (tmp_path / "markers").mkdir()
    source = FlakySource(str(tmp_path / "markers"), raise_once=8, die_once=9, always=10)
    result = render_on_ray(jobs, tmp_path / "out", source, RayRenderConfig(retries=2))
    assert sorted(p.name for p in result.paths) == [
        "organ-000-s7.wav", "organ-001-s8.wav", "organ-002-s9.wav", "organ-004-s11.wav"]
    assert all(p.with_suffix(".json").is_file() for p in result.paths)
    assert [label for label, _ in result.failures] == ["organ #3"]
    assert "RuntimeError: no luck with seed 10" in result.failures[0][1]
    assert result.retries == 1 + 1 + 2  # seed 8 once, seed 9 once, seed 10 twice
    err = capsys.readouterr().err
    assert "retrying organ #1 (attempt 2 of 3): RuntimeError" in err
    assert "retrying organ #2 (attempt 2 of 3)" in err  # the worker died
    assert "FAILED organ #3 after 3 attempts" in err


def test_the_cli_reports_a_failed_variation_with_its_exit_code(tmp_path, capsys, monkeypatch):
    from bridge import ray_render
    from bridge.ray_render import RayRenderResult

    def fake(jobs, out_dir, source, config):
        assert config.retries == 1 and config.address is None and config.workers == 2
        return RayRenderResult(failures=[("organ #0", "RuntimeError: boom")], retries=1)

    monkeypatch.setattr(ray_render, "render_on_ray", fake)
    preset = str(short_presets(tmp_path / "presets")[0])
    args = ["render", preset, "--out", str(tmp_path / "out"), "--ray", "--workers", "2",
            "--retries", "1"]
    assert main(args) == 1
    assert "indie: failed: organ #0: RuntimeError: boom" in capsys.readouterr().err


def test_ray_before_the_presets_is_a_message(tmp_path, capsys):
    preset = str(short_presets(tmp_path / "presets")[0])
    assert main(["render", "--ray", preset, preset]) == 2
    assert "put --ray after the presets" in capsys.readouterr().err
