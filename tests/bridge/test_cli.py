"""The `indie` command as a user runs it."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from engine import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_version_and_help_run_as_a_module():
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "--version"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"indie {__version__}"
    help_text = subprocess.run([sys.executable, "-m", "bridge.cli", "--help"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert "dataset" in help_text and "bench" in help_text


@pytest.mark.slow
def test_dataset_build_then_info(tmp_path, capsys):
    out = tmp_path / "data"
    code = main(["dataset", "build", "--out", str(out), "--limit", "2", "--workers", "2",
                 "--sources", "essenFolksong,miscFolk", "--clip-seconds", "6", "--seed", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"dataset {out} (seed 4)" in printed and "from 2 pieces" in printed
    assert "real time" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pieces"]["used"] == 2
    assert set(summary["labels"]["source"]) <= {"essenFolksong", "miscFolk"}
    rows = [json.loads(line) for split in ("train", "valid", "test")
            for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert rows and all(row["seconds"] <= 6.0 for row in rows)
    assert main(["dataset", "info", str(out)]) == 0
    assert "from 2 pieces" in capsys.readouterr().out


def test_bad_config_is_a_message_not_a_traceback(tmp_path, capsys):
    config = tmp_path / "dataset.yaml"
    config.write_text("clip_seconds: ten\n")
    code = main(["dataset", "build", "--out", str(tmp_path / "d"), "--config", str(config)])
    assert code == 2
    error = capsys.readouterr().err
    assert "indie: error:" in error and "dataset.yaml" in error and "clip_seconds" in error
    assert "Traceback" not in error


def test_unknown_source_is_a_message(tmp_path, capsys):
    code = main(["dataset", "build", "--out", str(tmp_path / "d"), "--sources", "bahc"])
    assert code == 2
    assert "bahc" in capsys.readouterr().err


def test_info_on_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().out


def test_engine_never_imports_bridge():
    for path in (ROOT / "engine").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "bridge" or n.startswith("bridge.") for n in names), path
