"""The independence experiment end to end at a tiny scale: tiny codecs and tagger exported to
tmp, tiny LMs, a tiny synthetic dataset with melodies."""

import json
from pathlib import Path

import pytest
import torch

from bridge.cli import main
from bridge.commands.experiment import SMALL_CONFIG
from engine.config import load_config, replace_config
from engine.evaluation.tagger import Tagger, export_tagger
from engine.experiments.config import IndependenceExperimentConfig, arm_name, arm_train_config
from engine.experiments.independence import ce_gaps, run_independence
from engine.experiments.report import COLUMNS
from engine.patterns import PATTERNS
from engine.weights import export_codec
from tests.engine.evaluation.test_lm_eval import TINY_TAGGER, write_melody_dataset
from tests.tiny_engine import FixedTextEncoder, tiny_codec

CODECS = ("baseline", "mmd")


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory) -> dict:
    """A 6-clip-per-split dataset with melodies, two tiny codecs and a tiny tagger on disk."""
    folder = tmp_path_factory.mktemp("independence")
    dataset = write_melody_dataset(folder / "data")
    codecs = {}
    for index, name in enumerate(CODECS):
        codec = tiny_codec()
        with torch.no_grad():  # two different codecs
            for parameter in codec.parameters():
                parameter.add_(0.01 * index)
        codecs[name] = str(export_codec(codec, folder / f"{name}.safetensors", {}))
    tagger = export_tagger(Tagger(TINY_TAGGER), folder / "tagger.safetensors", {})
    return {"folder": folder, "dataset": dataset, "codecs": codecs, "tagger": tagger}


def small_config(setup: dict, **overrides) -> IndependenceExperimentConfig:
    config = load_config(IndependenceExperimentConfig, SMALL_CONFIG)
    return replace_config(config, {"dataset": str(setup["dataset"]), "codecs": setup["codecs"],
                                   "tagger": str(setup["tagger"]), "max_clips": 0,
                                   "eval.codec_clips": 0, **overrides})


def test_small_command_writes_every_row_and_key(tiny_setup, tmp_path, capsys):
    out, work = tmp_path / "reports", tmp_path / "work"
    argv = ["experiment", "independence", "--small", "--dataset", str(tiny_setup["dataset"]),
            "--out", str(out), "--work", str(work), "--tagger", str(tiny_setup["tagger"])]
    argv += [item for name, path in tiny_setup["codecs"].items()
             for item in ("--codec", f"{name}={path}")]
    assert main(argv) == 0
    assert "8 arms" in capsys.readouterr().out
    result = json.loads((out / "independence.json").read_text())
    expected = [arm_name(c, p) for c in CODECS for p in PATTERNS]
    assert list(result["arms"]) == expected
    for name, arm in result["arms"].items():
        assert arm["train"]["steps"] == 6
        assert len(arm["valid_ce"]["per_codebook"]) == 4
        assert arm["ce_gap_to_flatten"] is not None
        for key in ("mi_delay_aligned", "mi_same_frame", "heldout_mmd"):
            assert key in arm["dependence"]
        quality = arm["quality"]
        assert quality["fd"] >= 0 and quality["kl"]["mean"] >= 0
        assert 0 <= quality["text_adherence"]["all"] <= 1
        assert quality["melody"]["chroma_similarity"] is not None
        speed = arm["speed"]
        assert speed["wall_seconds_per_audio_second"] > 0
        assert (work / "runs" / name / "checkpoint.pt").is_file()
    # Steps per second of audio follow the pattern: flatten takes K per frame, parallel one.
    steps = {p: result["arms"][arm_name("mmd", p)]["speed"]["steps_per_audio_second"]
             for p in PATTERNS}
    assert steps["flatten"] == pytest.approx(4 * steps["parallel"], rel=0.05)
    assert steps["parallel"] < steps["delay"] < steps["coarse_first"] < steps["flatten"]
    assert result["arms"][arm_name("mmd", "flatten")]["ce_gap_to_flatten"]["mean"] == 0.0

    markdown = (out / "independence.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(expected)  # the header, the rule and a row per arm
    assert all(line.count("|") == len(COLUMNS) + 1 for line in table)
    assert [line.split(" | ")[0][2:] for line in table[2:]] == expected
    assert "–" not in "".join(table[2:])  # every cell has a value
    assert "indie experiment independence --small" in markdown
    for plot in ("independence-ce-gap.png", "independence-wall-time.png"):
        assert (out / plot).stat().st_size > 1000


def test_resumed_run_skips_finished_arms(tiny_setup, tmp_path):
    config = small_config(tiny_setup, codecs={"mmd": tiny_setup["codecs"]["mmd"]},
                          patterns=["parallel", "flatten"])
    work, out = tmp_path / "work", tmp_path / "out"
    lines: list[str] = []
    first = run_independence(config, work, out, text_encoder=FixedTextEncoder(),
                             progress=lines.append)
    assert not any("skipped" in line for line in lines)
    # An interrupted arm: its result is gone, its run folder holds a finished checkpoint.
    (work / "arms" / "mmd-flatten.json").unlink()
    log_lines = (work / "runs" / "mmd-flatten" / "log.jsonl").read_text().splitlines()
    lines.clear()
    second = run_independence(config, work, out, text_encoder=FixedTextEncoder(),
                              progress=lines.append)
    assert "mmd-parallel: finished earlier, skipped" in lines
    assert not any(line.startswith("mmd-parallel: training") for line in lines)
    assert any(line.startswith("mmd-flatten: training") for line in lines)
    # The flatten run resumed from its checkpoint: no step was trained again.
    assert (work / "runs" / "mmd-flatten" / "log.jsonl").read_text().splitlines() == log_lines
    assert second["arms"]["mmd-parallel"] == first["arms"]["mmd-parallel"]
    assert (second["arms"]["mmd-flatten"]["valid_ce"]
            == first["arms"]["mmd-flatten"]["valid_ce"])
    # A finished arm whose settings changed is measured again, not reused.
    lines.clear()
    changed = replace_config(config, {"eval.seed": 1})
    run_independence(changed, work, out, text_encoder=FixedTextEncoder(), progress=lines.append)
    assert "mmd-parallel: settings changed since its last result, measured again" in lines
    assert not any("skipped" in line for line in lines)


def test_an_interrupted_arm_resumes_from_its_checkpoint(tiny_setup, tmp_path):
    from engine.data.tokens import tokenize_dataset
    from engine.experiments.independence import load_any_codec
    from engine.train.lm_trainer import train_lm

    config = small_config(tiny_setup, codecs={"mmd": tiny_setup["codecs"]["mmd"]},
                          patterns=["delay"])
    work = tmp_path / "work"
    codec = load_any_codec(tiny_setup["codecs"]["mmd"])
    tokenize_dataset(tiny_setup["dataset"], codec, work / "tokens" / "mmd",
                     codec_name=tiny_setup["codecs"]["mmd"])
    run = work / "runs" / "mmd-delay"
    halfway = replace_config(arm_train_config(config, "delay", str(work / "tokens" / "mmd"),
                                              codec), {"steps": 3})
    train_lm(halfway, run, text_encoder=FixedTextEncoder())  # stopped at step 3 of 6
    lines: list[str] = []
    result = run_independence(config, work, tmp_path / "out", text_encoder=FixedTextEncoder(),
                              progress=lines.append)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]  # logged every 2 and validated every 3: no step done twice
    assert result["arms"]["mmd-delay"]["train"]["steps"] == 6


def _arm(codec: str, pattern: str, ce: list[float]) -> dict:
    return {"codec": codec, "pattern": pattern, "valid_ce": {"per_codebook": ce}}


def test_ce_gap_is_against_the_flatten_arm_of_the_same_codec():
    arms = {"a-flatten": _arm("a", "flatten", [1.0, 2.0]),
            "a-parallel": _arm("a", "parallel", [1.5, 3.0]),
            "b-flatten": _arm("b", "flatten", [0.5, 0.5]),
            "b-parallel": _arm("b", "parallel", [1.5, 3.0]),
            "c-delay": _arm("c", "delay", [1.0, 1.0])}
    gaps = ce_gaps(arms)
    assert gaps["a-parallel"] == {"per_codebook": [0.5, 1.0], "mean": 0.75}
    assert gaps["b-parallel"] == {"per_codebook": [1.0, 2.5], "mean": 1.75}
    assert gaps["a-flatten"]["mean"] == 0.0
    assert gaps["c-delay"] is None  # no flatten arm for codec c


def test_every_arm_has_the_same_model_size_and_flatten_fits(tiny_setup):
    from engine.lm import LanguageModel
    from engine.weights import load_codec

    config = small_config(tiny_setup)
    codec = load_codec(tiny_setup["codecs"]["mmd"])
    trains = {p: arm_train_config(config, p, "tokens", codec) for p in PATTERNS}
    sizes = {p: sum(x.numel() for x in LanguageModel(t.lm).parameters())
             for p, t in trains.items()}
    assert len(set(sizes.values())) == 1
    assert {t.lm.pattern for t in trains.values()} == set(PATTERNS)
    flatten_steps = 4 * (config.eval.seconds * codec.frame_rate)
    assert trains["flatten"].lm.max_steps >= max(flatten_steps, 4 * config.train.data.crop_frames)
    assert trains["delay"].lm.codebook_size == codec.cardinality == 16


def test_full_config_loads_and_uses_the_shipped_codecs():
    from bridge.commands.experiment import FULL_CONFIG

    config = load_config(IndependenceExperimentConfig, FULL_CONFIG)
    assert config.dataset == "data/indie-10h"
    assert {Path(p).name for p in config.codecs.values()} == {
        "codec.safetensors", "codec-baseline.safetensors"}
    assert config.patterns == PATTERNS
