"""Codec evaluation end to end on a tiny codec, and the `indie train|eval codec` commands."""

import json

import torch
import yaml

from bridge.cli import main
from engine.codec import Codec, CodecConfig
from engine.evaluation.codec_eval import evaluate_codec, plot_mi_heatmaps, plot_spectrograms
from engine.quantizer import QuantizerConfig

TINY = CodecConfig(base_channels=4, latent_dim=8,
                   quantizer=QuantizerConfig(codebook_size=16, dim=8, kmeans_init=False))


def test_evaluation_reports_reconstruction_dependence_and_usage(tone_dataset, tmp_path):
    torch.manual_seed(0)
    codec = Codec(TINY)
    result = evaluate_codec(codec, tone_dataset / "test.jsonl", speed=False)
    assert result["clips"] == 3 and result["seconds"] == 3.0
    assert result["bitrate_bps"] == 4 * 4 * 50  # K log2(N) frame rate
    assert result["mel_distance"] > 0 and result["si_sdr_db"] < 10  # an untrained codec
    for key in ("mi_same_frame", "mi_delay_aligned"):
        assert len(result[key]["normalised"]) == 4
    usage = result["code_usage"]
    assert all(0 <= h <= 4 for h in usage["entropy_bits"])
    assert plot_mi_heatmaps({"a": result, "b": result}, tmp_path / "mi.png").stat().st_size > 0
    audio = torch.randn(1, 1, 6400) * 0.1
    assert plot_spectrograms({"tiny": codec}, audio, tmp_path / "spec.png").stat().st_size > 0


def test_train_then_eval_from_the_command_line(tone_dataset, tmp_path, capsys):
    config = {"codec": {"base_channels": 4, "latent_dim": 8,
                        "quantizer": {"codebook_size": 16, "dim": 8}},
              "data": {"dataset": str(tone_dataset), "batch_size": 2, "segment_seconds": 0.16},
              "independence": {"weight": 1.0, "rows": 64},
              "steps": 2, "valid_every": 2, "valid_batches": 1, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["train", "codec", "--config", str(tmp_path / "c.yaml"), "--run", str(run)]) == 0
    assert "to step 2" in capsys.readouterr().out
    assert main(["train", "codec", "--config", str(tmp_path / "c.yaml"), "--run", str(run),
                 "--resume", "--steps", "3"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "codec", "--checkpoint", str(run / "checkpoint.pt"), "--dataset",
                 str(tone_dataset), "--no-speed", "--json", str(out), "--plots",
                 str(tmp_path / "plots"), "--baseline", str(out)]) == 0
    assert (tmp_path / "plots" / "mi-codec.png").is_file()
    result = json.loads(out.read_text())
    assert result["clips"] == 3 and "mi_delay_aligned" in result
