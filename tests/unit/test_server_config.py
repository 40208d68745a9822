"""Server configuration: the YAML file, and flags over environment over file."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from crossrank.cli import build_parser
from crossrank.cli.serve import FILE_KEYS, SETTINGS, build_settings, resolve_options
from crossrank.cli.serve_settings import Setting
from crossrank.errors import InvalidInput
from crossrank.server.config import read_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def test_example_config_reads() -> None:
    entries, server = read_config(EXAMPLE)
    assert [(e.name, e.type, e.model) for e in entries] == [
        ("msmarco", "cross-encoder", "cross-encoder/ms-marco-MiniLM-L6-v2"),
        ("minilm", "bi-encoder", "sentence-transformers/all-MiniLM-L6-v2"),
    ]
    assert entries[1].dim == 384 and server["port"] == 8080


@pytest.mark.parametrize(
    "text, message",
    [
        ("inference: {}\n", "inference"),
        ("nothing: 1\n", "inference"),
        ("inference:\n  a:\n    type: cross\n    model: x\n", "type"),
        ("inference:\n  a:\n    type: cross-encoder\n", "model"),
        ("inference:\n  a:\n    model: x\n    colour: red\n", "unknown keys"),
        ("inference: [\n", "YAML"),
        ("inference:\n  a:\n    model: m\n    mode: turbo\n", "mode must be one of"),
        ("inference:\n  a:\n    model: m\n    device: tpu\n", "device must be one of"),
        ("inference:\n  a:\n    type: bi-encoder\n    model: m\n    mode: fast\n", "exact mode only"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        read_config(path)


def test_mode_and_device_per_model(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "inference:\n  a:\n    model: m\n    mode: auto\n    device: cuda\n  b:\n    model: m\n", encoding="utf-8"
    )
    a, b = read_config(path)[0]
    assert (a.mode, a.device, a.providers) == ("auto", "cuda", ["cuda"])
    assert (b.mode, b.device, b.providers) == ("exact", "cpu", None)


def test_type_defaults_to_cross_encoder(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("inference:\n  a:\n    model: some/model\n", encoding="utf-8")
    assert read_config(path)[0][0].type == "cross-encoder"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_flag_beats_environment_beats_file() -> None:
    env = {"CROSSRANK_PORT": "9000", "CROSSRANK_BATCH_SIZE": "8", "CROSSRANK_NO_BATCHING": "true"}
    file = {"port": 7000, "batch_size": 4, "deadline": 5, "max_queue": 50}
    options = resolve_options(parse("--port", "9100"), env, file)
    settings = build_settings(options)
    assert settings.port == 9100  # flag
    assert settings.batch.batch_size == 8 and settings.batch.batching is False  # environment
    assert settings.deadline_s == 5 and settings.batch.max_queue == 50  # file
    assert settings.host == "127.0.0.1" and settings.max_body_bytes == 10 * 1024 * 1024  # defaults
    assert settings.keep_alive_s == 75.0
    tuned = build_settings(resolve_options(parse(), {"CROSSRANK_KEEP_ALIVE_TIMEOUT": "120"}, {}))
    assert tuned.keep_alive_s == 120.0
    assert settings.client_timeout_s == 60.0
    assert build_settings(resolve_options(parse(), {"CROSSRANK_CLIENT_TIMEOUT": "7.5"}, {})).client_timeout_s == 7.5


def test_bad_environment_values_are_named() -> None:
    with pytest.raises(InvalidInput, match="CROSSRANK_PORT"):
        resolve_options(parse(), {"CROSSRANK_PORT": "eighty"}, {})


@pytest.mark.parametrize("argv, message", [
    (("--port", "99999"), "--port must be a whole number from 0 to 65535"),
    (("--port", "-1"), "--port"),
    (("--max-body-bytes", "0"), "--max-body-bytes must be a whole number >= 1"),
    (("--max-documents", "-5"), "--max-documents"),
    (("--max-inflight-bytes", "0"), "--max-inflight-bytes must be a whole number >= 1"),
    (("--tokenizer-threads", "0"), "--tokenizer-threads"),
    (("--threads", "0"), "threads must be a whole number >= 1"),
    (("--deadline", "0"), "--deadline must be a number of seconds > 0"),
    (("--keep-alive-timeout", "-1"), "--keep-alive-timeout"),
    (("--client-timeout", "0"), "--client-timeout must be a number of seconds > 0"),
    (("--graceful-timeout", "-0.5"), "--graceful-timeout must be a number of seconds >= 0"),
])
def test_settings_out_of_range_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_settings(resolve_options(parse(*argv), {}, {}))


def test_settings_from_a_file_must_be_numbers() -> None:
    with pytest.raises(InvalidInput, match="--port .* got '8080'"):
        build_settings(resolve_options(parse(), {}, {"port": "8080"}))
    assert build_settings(resolve_options(parse("--graceful-timeout", "0", "--port", "0"), {}, {})).port == 0


def test_help_shows_every_setting_with_its_default_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse wraps at hyphens
    for setting in SETTINGS:
        help_text = " ".join(setting.help_text().split()).replace("- ", "-")
        assert setting.flag in text and help_text in text, setting.name
        assert "(default: " in help_text
        if setting.default is not None and setting.shown_default is None:
            shown = f"{setting.default:g}" if isinstance(setting.default, float) else str(setting.default)
            assert f"(default: {shown})" in text, setting.name
    for variable in ("CROSSRANK_CONFIG", "CROSSRANK_MODEL_NAME", "CROSSRANK_PORT", "CROSSRANK_NO_BATCHING=1",
                     "CROSSRANK_MAX_BATCH_TOKENS", "CROSSRANK_MODE", "CROSSRANK_INSTRUCTION"):
        assert f"[{variable}]" in text  # the names deployments already use


def test_declared_defaults_are_the_server_settings_defaults() -> None:
    from crossrank.scheduler import BatchSettings
    from crossrank.server.config import ServerSettings

    fields = {f"batch.{f.name}": f.default for f in dataclasses.fields(BatchSettings)}
    fields.update({f.name: f.default for f in dataclasses.fields(ServerSettings)})
    for setting in SETTINGS:
        if setting.field is not None:
            path = setting.field.removeprefix("!")
            assert fields[path] == (setting.default if path == setting.field else not setting.default), setting.name
    assert build_settings(resolve_options(parse(), {}, {})) == ServerSettings()


def _values(setting: Setting) -> tuple[object, object, object]:
    """Three distinct valid values of ``setting``: for the flag, the environment and the file."""
    if setting.choices:
        first, second, third = (setting.choices + setting.choices)[1:4]
        return first, second, third
    return {int: (3, 4, 5), float: (3.5, 4.5, 5.5), str: ("a", "b", "c"), bool: (True, True, False)}[setting.type]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_flag_beats_environment_beats_file_beats_default_for_every_setting(setting: Setting) -> None:
    flag, env, file = _values(setting)
    argv = (setting.flag,) if setting.type is bool else (setting.flag, str(flag))
    environment = {setting.variable: "1" if setting.type is bool else str(env)} if setting.variable else {}
    in_file = {setting.name: file} if setting.file else {}
    assert resolve_options(parse(*argv), environment, in_file)[setting.name] == flag
    if setting.variable:
        assert resolve_options(parse(), environment, in_file)[setting.name] == env
    if setting.file:
        assert resolve_options(parse(), {}, in_file)[setting.name] == file
    else:
        assert setting.name not in FILE_KEYS
    assert resolve_options(parse(), {}, {})[setting.name] == setting.default


def test_unknown_server_keys_in_the_file_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"unknown key\(s\) \['max_documens', 'model'\] under 'server:'.*max_documents"):
        resolve_options(parse(), {}, {"max_documens": 5, "model": "x", "port": 1})
    assert resolve_options(parse(), {}, {"max_documents": 5})["max_documents"] == 5
