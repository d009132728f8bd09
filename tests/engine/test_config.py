"""Typed YAML configuration: building, every error message, round trips and overrides."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from engine.config import (
    ConfigError,
    from_dict,
    load_config,
    replace_config,
    save_config,
    to_dict,
)


@dataclass(frozen=True)
class CodecConfig:
    latent_dim: int = 32
    strides: tuple[int, ...] = (2, 4, 5, 8)
    learning_rate: float = 3e-4


@dataclass(frozen=True)
class LMConfig:
    pattern: Literal["parallel", "delay"] = "delay"
    layers: int = 4
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    name: str
    codec: CodecConfig = field(default_factory=CodecConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    data_dir: Path = Path("data")
    seed: int | None = None
    resume: Optional[Path] = None  # noqa: UP045 -- the typing spelling must work too
    window: tuple[float, float] = (0.0, 10.0)
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    fp16: bool = False


@dataclass(frozen=True)
class Positive:
    value: int = 1

    def __post_init__(self):
        if self.value <= 0:
            raise ValueError(f"value must be positive, got {self.value}")


@dataclass(frozen=True)
class Holder:
    inner: Positive = field(default_factory=Positive)


def error(cls, data, source="presets/a.yaml") -> str:
    with pytest.raises(ConfigError) as caught:
        from_dict(cls, data, source=source)
    message = str(caught.value)
    assert message.startswith(source + ": ")
    return message


# --- building ------------------------------------------------------------------------------


def test_defaults_and_nested():
    cfg = from_dict(TrainConfig, {"name": "demo", "codec": {"latent_dim": 64}})
    assert cfg.codec == CodecConfig(latent_dim=64)
    assert cfg.lm == LMConfig()
    assert cfg.data_dir == Path("data")


def test_conversions():
    cfg = from_dict(
        TrainConfig,
        {
            "name": "demo",
            "codec": {"strides": [2, 2], "learning_rate": 1},
            "lm": {"pattern": "parallel"},
            "data_dir": "/tmp/x",
            "seed": 7,
            "resume": "runs/last.pt",
            "window": [1, 2.5],
            "tags": ["a", "b"],
            "weights": {"kick": 1, "snare": 0.5},
            "fp16": True,
        },
    )
    assert cfg.codec.strides == (2, 2)
    assert isinstance(cfg.codec.learning_rate, float) and cfg.codec.learning_rate == 1.0
    assert cfg.lm.pattern == "parallel"
    assert cfg.data_dir == Path("/tmp/x")
    assert cfg.seed == 7
    assert cfg.resume == Path("runs/last.pt")
    assert cfg.window == (1.0, 2.5) and all(isinstance(v, float) for v in cfg.window)
    assert cfg.tags == ["a", "b"]
    assert cfg.weights == {"kick": 1.0, "snare": 0.5}
    assert cfg.fp16 is True


def test_none_for_optional_fields():
    cfg = from_dict(TrainConfig, {"name": "x", "seed": None, "resume": None})
    assert cfg.seed is None and cfg.resume is None


def test_yaml_style_exponent_is_a_float():
    # PyYAML reads `3e-4` as the string '3e-4'.
    assert yaml.safe_load("lr: 3e-4")["lr"] == "3e-4"
    cfg = from_dict(CodecConfig, {"learning_rate": "3e-4"})
    assert cfg.learning_rate == pytest.approx(3e-4)


def test_result_is_frozen():
    cfg = from_dict(CodecConfig, {})
    with pytest.raises(AttributeError):
        cfg.latent_dim = 3


def test_needs_a_dataclass():
    with pytest.raises(TypeError):
        from_dict(dict, {})


# --- error messages ------------------------------------------------------------------------


def test_wrong_scalar_type():
    message = error(TrainConfig, {"name": "x", "codec": {"latent_dim": "abc"}})
    assert message == "presets/a.yaml: key 'codec.latent_dim': expected int, got str 'abc'"


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"codec": {"latent_dim": True}}, "codec.latent_dim", "expected int, got bool True"),
        ({"codec": {"latent_dim": 3.5}}, "codec.latent_dim", "expected int, got float 3.5"),
        ({"lm": {"dropout": False}}, "lm.dropout", "expected float, got bool False"),
        ({"lm": {"dropout": "lots"}}, "lm.dropout", "expected float, got str 'lots'"),
        ({"name": 5}, "name", "expected str, got int 5"),
        ({"fp16": "yes please"}, "fp16", "expected bool"),
        ({"seed": "7"}, "seed", "expected int, got str '7'"),
        ({"data_dir": 3}, "data_dir", "expected a path"),
        ({"codec": {"strides": 8}}, "codec.strides", "expected a list"),
        ({"codec": {"strides": [2, "x"]}}, "codec.strides[1]", "expected int, got str 'x'"),
        ({"window": [1, 2, 3]}, "window", "expected a list of 2 items"),
        ({"tags": "solo"}, "tags", "expected a list"),
        ({"weights": {"kick": "loud"}}, "weights.kick", "expected float"),
        ({"weights": {1: 0.5}}, "weights.1", "expected str, got int 1"),
        ({"weights": [1]}, "weights", "expected a mapping"),
        ({"name": None}, "name", "expected str, got null"),
    ],
)
def test_type_errors_name_the_key(data, key, expected):
    message = error(TrainConfig, {"name": "x", **data})
    assert f"key '{key}': " in message
    assert expected in message


def test_unknown_key_suggests_the_closest():
    message = error(TrainConfig, {"name": "x", "codec": {"latnt_dim": 64}})
    assert "unknown key 'codec.latnt_dim'" in message
    assert "did you mean 'latent_dim'?" in message
    assert "allowed: latent_dim, strides, learning_rate" in message


def test_unknown_key_without_a_close_match():
    message = error(TrainConfig, {"name": "x", "zzzz": 1})
    assert "unknown key 'zzzz'" in message
    assert "did you mean" not in message


def test_literal_lists_the_choices():
    message = error(TrainConfig, {"name": "x", "lm": {"pattern": "dlay"}})
    assert message == (
        "presets/a.yaml: key 'lm.pattern': expected one of 'parallel', 'delay', got 'dlay'"
        " (did you mean 'delay'?)"
    )


def test_literal_does_not_confuse_true_and_one():
    @dataclass(frozen=True)
    class Bits:
        depth: Literal[1, 2] = 1

    assert "expected one of 1, 2, got bool True" in error(Bits, {"depth": True})
    assert from_dict(Bits, {"depth": 2}).depth == 2


def test_union_of_several_types():
    @dataclass(frozen=True)
    class Mixed:
        size: int | str = 1
        raw: tuple = ()

    assert from_dict(Mixed, {"size": "auto", "raw": [1, "a"]}) == Mixed("auto", (1, "a"))
    assert from_dict(Mixed, {"size": 3}).size == 3
    assert "key 'size': expected int | str, got null" in error(Mixed, {"size": None})
    assert "key 'size': expected int | str, got float 1.5" in error(Mixed, {"size": 1.5})


def test_missing_required_key():
    assert error(TrainConfig, {}) == "presets/a.yaml: missing required key 'name'"


def test_missing_required_nested_key():
    @dataclass(frozen=True)
    class Inner:
        size: int

    @dataclass(frozen=True)
    class Outer:
        inner: Inner

    assert "missing required key 'inner.size'" in error(Outer, {"inner": {}})
    assert "missing required key 'inner'" in error(Outer, {})


def test_section_that_is_not_a_mapping():
    message = error(TrainConfig, {"name": "x", "codec": 64})
    assert "key 'codec': expected a mapping with keys latent_dim, strides" in message
    assert "got int 64" in message


def test_post_init_errors_become_config_errors():
    message = error(Holder, {"inner": {"value": -2}})
    assert message == "presets/a.yaml: key 'inner': value must be positive, got -2"


def test_default_source_is_named():
    with pytest.raises(ConfigError, match=r"^<config>: key 'layers'"):
        from_dict(LMConfig, {"layers": "four"})


# --- files ---------------------------------------------------------------------------------


def test_load_config_from_yaml(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text(
        "name: jam\n"
        "codec:\n"
        "  latent_dim: 48\n"
        "  strides: [2, 4]\n"
        "lm:\n"
        "  pattern: parallel\n"
        "window: [0.5, 4]\n"
        "tags: [lofi]\n"
    )
    cfg = load_config(TrainConfig, path)
    assert cfg == TrainConfig(
        name="jam",
        codec=CodecConfig(latent_dim=48, strides=(2, 4)),
        lm=LMConfig(pattern="parallel"),
        window=(0.5, 4.0),
        tags=["lofi"],
    )


def test_load_config_errors_name_the_file(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("name: jam\ncodec:\n  latent_dim: big\n")
    with pytest.raises(ConfigError) as caught:
        load_config(TrainConfig, path)
    assert str(caught.value) == f"{path}: key 'codec.latent_dim': expected int, got str 'big'"


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_config(LMConfig, path) == LMConfig()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file: .*absent.yaml"):
        load_config(LMConfig, tmp_path / "absent.yaml")


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"directory: .*folder\.yaml"):
        load_config(LMConfig, folder)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("layers: 4\npattern: [delay\ndropout: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(LMConfig, path)
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    line, column = message[len(str(path)) + 1 :].split(":")[:2]
    assert int(line) >= 2 and int(column) >= 1
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- layers\n- 4\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping .* got list"):
        load_config(LMConfig, path)


def test_save_and_load_round_trip(tmp_path):
    cfg = TrainConfig(
        name="caf\u00e9",
        codec=CodecConfig(latent_dim=16, learning_rate=1e-5),
        data_dir=Path("/data/x"),
        resume=Path("runs/a.pt"),
        window=(0.25, 8.0),
        tags=["a"],
        weights={"kick": 2.0},
        fp16=True,
    )
    path = save_config(cfg, tmp_path / "out" / "saved.yaml")
    text = path.read_text(encoding="utf-8")
    assert text.index("name:") < text.index("codec:") < text.index("fp16:")  # field order
    assert "caf\u00e9" in text
    assert load_config(TrainConfig, path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["saved.yaml"]


# --- to_dict and replace_config ------------------------------------------------------------


def test_to_dict_is_plain_and_round_trips():
    cfg = TrainConfig(name="x", resume=Path("r.pt"), tags=["t"])
    data = to_dict(cfg)
    assert data["codec"] == {"latent_dim": 32, "strides": [2, 4, 5, 8], "learning_rate": 3e-4}
    assert data["data_dir"] == "data" and data["resume"] == "r.pt"
    assert data["window"] == [0.0, 10.0]
    assert yaml.safe_load(yaml.safe_dump(data)) == data  # nothing YAML cannot represent
    assert from_dict(TrainConfig, data) == cfg


def test_to_dict_needs_an_instance():
    with pytest.raises(TypeError):
        to_dict(TrainConfig)


def test_replace_config():
    cfg = TrainConfig(name="x")
    new = replace_config(
        cfg, {"codec.latent_dim": 64, "lm.pattern": "parallel", "seed": 3, "weights.kick": 1}
    )
    assert new.codec.latent_dim == 64 and new.codec.strides == cfg.codec.strides
    assert new.lm.pattern == "parallel"
    assert new.seed == 3
    assert new.weights == {"kick": 1.0}
    assert cfg.codec.latent_dim == 32  # the original is untouched


def test_replace_config_accepts_tuples_and_dataclasses():
    new = replace_config(TrainConfig(name="x"), {"window": (1, 2), "lm": LMConfig(layers=9)})
    assert new.window == (1.0, 2.0)
    assert new.lm == LMConfig(layers=9)


def test_replace_config_fills_an_unset_optional_section():
    @dataclass(frozen=True)
    class WithOptional:
        lm: LMConfig | None = None

    assert replace_config(WithOptional(), {"lm.layers": 2}).lm == LMConfig(layers=2)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"codec.latent_dim": "abc"}, "key 'codec.latent_dim': expected int, got str 'abc'"),
        ({"codec.latnt_dim": 1}, "unknown key 'codec.latnt_dim' (did you mean 'latent_dim'?"),
        ({"codc.latent_dim": 1}, "unknown key 'codc' (did you mean 'codec'?"),
        ({"lm.pattern": "dlay"}, "expected one of 'parallel', 'delay'"),
        ({"seed.value": 1}, "key 'seed.value': 'seed' is not a section"),
        ({"name.first": 1}, "'name' is not a section, it holds str 'x'"),
    ],
)
def test_replace_config_errors(overrides, fragment):
    with pytest.raises(ConfigError) as caught:
        replace_config(TrainConfig(name="x", seed=5), overrides, source="--set")
    message = str(caught.value)
    assert message.startswith("--set: ")
    assert fragment in message
