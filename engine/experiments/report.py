"""The independence experiment's report: one table (a row per arm), JSON and PNG plots."""

from __future__ import annotations

from pathlib import Path

from engine.atomic import write_json_atomic, write_text_atomic

# (header, how to read the value from an arm, format)
COLUMNS = (
    ("arm", lambda a: a["arm"], "{}"),
    ("MI delay-aligned, norm.", lambda a: a["dependence"]["mi_delay_aligned"]["mean_normalised"],
     "{:.4f}"),
    ("MI same-frame, norm.", lambda a: a["dependence"]["mi_same_frame"]["mean_normalised"],
     "{:.4f}"),
    ("held-out MMD²", lambda a: a["dependence"]["heldout_mmd"], "{:.4f}"),
    ("valid CE, nats", lambda a: a["valid_ce"]["mean"], "{:.3f}"),
    ("CE gap to flatten", lambda a: (a["ce_gap_to_flatten"] or {}).get("mean"), "{:+.3f}"),
    ("FD", lambda a: a["quality"]["fd"], "{:.3g}"),
    ("KL", lambda a: a["quality"]["kl"]["mean"], "{:.3f}"),
    ("text adherence", lambda a: a["quality"]["text_adherence"]["all"], "{:.2f}"),
    ("melody (chroma)", lambda a: a["quality"]["melody"]["chroma_similarity"], "{:.3f}"),
    ("steps / s audio", lambda a: a["speed"]["steps_per_audio_second"], "{:.0f}"),
    ("wall s / s audio", lambda a: a["speed"]["wall_seconds_per_audio_second"], "{:.3f}"),
)


def table_rows(result: dict) -> list[list[str]]:
    """The table's cells, a row per arm in run order ("–" where a value is missing)."""
    rows = []
    for arm in result["arms"].values():
        row = []
        for _, read, fmt in COLUMNS:
            value = read(arm)
            row.append("–" if value is None else fmt.format(value))
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    """reports/independence.md: the command, the table, how to read it."""
    config = result["config"]
    train, ev = config["train"], config["eval"]
    lm = train["lm"]
    header = [name for name, _, _ in COLUMNS]
    lines = [
        "# Independence experiment: codec × decoding pattern",
        "",
        f"Made by `{result['command']}`" if result["command"] else "",
        "",
        f"Dataset `{result['dataset']}`; LMs of {lm['dim']} wide × {lm['num_layers']} layers, "
        f"{train['steps']} steps of batch {train['data']['batch_size']} × "
        f"{train['data']['crop_frames']} frames, seed {train['seed']}, the same for every arm. "
        f"Quality and speed on {ev['clips']} generated clips of {ev['seconds']:g} s "
        f"(cfg {ev['cfg']:g}, top-k {ev['top_k']}, {ev['threads']} thread(s)).",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in table_rows(result)),
        "",
        "MI: mean pairwise mutual information of the codec's code streams on the test split, "
        "normalised by the marginal entropies (plug-in minus a shuffled baseline). Held-out MMD²: "
        "the independence loss without gradients (one set of MMD settings for every codec). "
        "CE gap: the arm's validation cross-entropy minus that of the flatten (joint) arm of the "
        "same codec, averaged over codebooks: what the pattern throws away. FD: Fréchet distance "
        "of our tagger's embeddings (not VGGish) to the test clips; KL: tagger posteriors against "
        "the real clip of the same caption; text adherence: share of clips whose ensemble, mode "
        "and tempo bucket the tagger recognises; melody: chroma cosine similarity. Speed: LM "
        "steps and wall seconds per second of generated audio on this machine.",
        "",
        "Plots: `independence-ce-gap.png`, `independence-wall-time.png`.",
        "",
    ]
    return "\n".join(lines)


def write_report(result: dict, out: str | Path) -> dict[str, Path]:
    """Write independence.md, independence.json and the plots into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(out / "independence.json", result),
             "md": write_text_atomic(out / "independence.md", markdown(result))}
    paths.update(plot(result, out))
    return paths


def plot(result: dict, out: Path) -> dict[str, Path]:
    """Bar charts per arm: CE gap to flatten per codebook, and wall time per second of audio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = list(result["arms"].values())
    names = [a["arm"] for a in arms]
    x = np.arange(len(arms))
    paths = {}

    fig, ax = plt.subplots(figsize=(1.0 * len(arms) + 3, 4))
    k = len(arms[0]["valid_ce"]["per_codebook"])
    width = 0.8 / k
    for book in range(k):
        gaps = [(a["ce_gap_to_flatten"] or {"per_codebook": [np.nan] * k})["per_codebook"][book]
                for a in arms]
        ax.bar(x + (book - (k - 1) / 2) * width, gaps, width, label=f"codebook {book}")
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("valid CE − flatten CE (nats)")
    ax.set_title("What each pattern throws away, per codebook")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["ce_gap"] = out / "independence-ce-gap.png"
    fig.savefig(paths["ce_gap"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(1.0 * len(arms) + 3, 4))
    wall = [a["speed"]["wall_seconds_per_audio_second"] for a in arms]
    ax.bar(x, wall, color=["tab:blue" if a["codec"] == arms[0]["codec"] else "tab:orange"
                           for a in arms])
    ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8, label="real time")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("wall seconds per second of audio")
    ax.set_title("Generation speed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["wall_time"] = out / "independence-wall-time.png"
    fig.savefig(paths["wall_time"], dpi=110)
    plt.close(fig)
    return paths
