"""The services' command lines are made from their settings classes: a flag per setting, the
model's defaults, FARM_* when a flag is absent, the flag when given, bad values as usage errors.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from farm_common import settings_cli
from orchestrator import cli as orchestrator_cli
from orchestrator.settings import OrchestratorSettings
from render_node import cli as node_cli
from render_node.settings import NodeSettings

SERVICES: dict[str, tuple[type[BaseSettings], Callable[[], argparse.ArgumentParser]]] = {
    "render-node": (NodeSettings, node_cli.build_parser),
    "orchestrator": (OrchestratorSettings, orchestrator_cli.build_parser),
}
PARSE: dict[str, Callable[[list[str]], BaseSettings]] = {
    "render-node": node_cli.parse_settings,
    "orchestrator": orchestrator_cli.parse_settings,
}
EVERY_SETTING = [
    (service, name) for service, (cls, _) in SERVICES.items() for name in cls.model_fields
]


@pytest.fixture(autouse=True)
def no_farm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FARM_"):
            monkeypatch.delenv(name)


def action_for(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


@pytest.mark.parametrize(("service", "name"), EVERY_SETTING)
def test_every_setting_has_a_flag_with_help_default_and_env_var(service: str, name: str) -> None:
    cls, build = SERVICES[service]
    field = cls.model_fields[name]
    action = action_for(build(), "--" + name.replace("_", "-"))
    assert action.dest == name
    assert action.default is None  # the model holds the one default
    assert field.description and action.help
    assert field.description in action.help.replace("%%", "%")
    assert f"FARM_{name.upper()})" in action.help
    assert "(default: " in action.help


@pytest.mark.parametrize(
    ("service", "flag", "shown"),
    [
        ("render-node", "--port", "(default: 8100; FARM_PORT)"),
        ("render-node", "--frame-timeout", "(default: 1800; FARM_FRAME_TIMEOUT)"),
        ("render-node", "--allow-freestyle", "(default: off; FARM_ALLOW_FREESTYLE)"),
        ("render-node", "--memory-limit-mb", "(default: none; FARM_MEMORY_LIMIT_MB)"),
        ("orchestrator", "--port", "(default: 8000; FARM_PORT)"),
        ("orchestrator", "--poll-interval", "(default: 0.3; FARM_POLL_INTERVAL)"),
        ("orchestrator", "--node", "(default: none; FARM_NODE)"),
        ("orchestrator", "--data-dir", "(default: .farm/orchestrator; FARM_DATA_DIR)"),
    ],
)
def test_help_shows_the_models_default(service: str, flag: str, shown: str) -> None:
    help_text = action_for(SERVICES[service][1](), flag).help
    assert help_text is not None and help_text.endswith(shown)


@pytest.mark.parametrize("service", SERVICES)
def test_without_flags_or_env_the_models_defaults_hold(service: str) -> None:
    cls, _ = SERVICES[service]
    settings = PARSE[service]([])
    for name, field in cls.model_fields.items():
        assert getattr(settings, name) == field.get_default(call_default_factory=True), name


@pytest.mark.parametrize(
    ("service", "argv", "name", "value"),
    [
        ("render-node", ["--data-dir", "/d"], "data_dir", Path("/d")),
        ("render-node", ["--scenes-dir", "s"], "scenes_dir", Path("s")),
        ("render-node", ["--slots", "3"], "slots", 3),
        ("render-node", ["--max-upload-mb", "1.5"], "max_upload_mb", 1.5),
        ("render-node", ["--memory-limit-mb", "4096"], "memory_limit_mb", 4096),
        ("render-node", ["--allow-freestyle"], "allow_freestyle", True),
        ("render-node", ["--log-level", "debug"], "log_level", "debug"),
        ("render-node", ["--log-lines", "50"], "log_lines", 50),
        ("render-node", ["--version-timeout", "5"], "version_timeout", 5.0),
        ("orchestrator", ["--node", "http://a:1/", "--node", "http://b:2"], "node",
         ["http://a:1", "http://b:2"]),
        ("orchestrator", ["--single-process"], "single_process", True),
        ("orchestrator", ["--max-attempts", "5"], "max_attempts", 5),
        ("orchestrator", ["--poll-interval", "0.1"], "poll_interval", 0.1),
        ("orchestrator", ["--log-format", "json"], "log_format", "json"),
        ("orchestrator", ["--data-dir", "/o"], "data_dir", Path("/o")),
    ],
)  # fmt: skip
def test_a_flag_sets_its_setting_with_its_type(
    service: str, argv: list[str], name: str, value: Any
) -> None:
    got = getattr(PARSE[service](argv), name)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("service", "env", "argv", "name", "value"),
    [
        ("render-node", {"FARM_PORT": "8300"}, ["--port", "8400"], "port", 8400),
        ("render-node", {"FARM_ALLOW_FREESTYLE": "1"}, ["--no-allow-freestyle"],
         "allow_freestyle", False),
        ("render-node", {"FARM_LOG_LEVEL": "warning"}, ["--log-level", "debug"], "log_level",
         "debug"),
        ("render-node", {"FARM_DATA_DIR": "/env"}, ["--data-dir", "/flag"], "data_dir",
         Path("/flag")),
        ("orchestrator", {"FARM_NODE": "http://b:2,http://c:3"}, ["--node", "http://a:1"], "node",
         ["http://a:1"]),
        ("orchestrator", {"FARM_SINGLE_PROCESS": "0"}, ["--single-process"], "single_process",
         True),
        ("orchestrator", {"FARM_TOKEN": "env"}, ["--token", "flag"], "token", "flag"),
    ],
)  # fmt: skip
def test_a_given_flag_wins_over_its_farm_env_var(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    env: dict[str, str],
    argv: list[str],
    name: str,
    value: Any,
) -> None:
    for key, text in env.items():
        monkeypatch.setenv(key, text)
    assert getattr(PARSE[service](argv), name) == value


@pytest.mark.parametrize(
    ("service", "env", "name", "value"),
    [
        ("render-node", {"FARM_SLOTS": "4"}, "slots", 4),
        ("render-node", {"FARM_ALLOW_FREESTYLE": "1"}, "allow_freestyle", True),
        ("render-node", {"FARM_MEMORY_LIMIT_MB": "12288"}, "memory_limit_mb", 12288),
        ("render-node", {"FARM_LOG_LEVEL": "warning"}, "log_level", "warning"),
        ("orchestrator", {"FARM_NODE": "http://b:2/, http://c:3"}, "node",
         ["http://b:2", "http://c:3"]),
        ("orchestrator", {"FARM_SINGLE_PROCESS": "1"}, "single_process", True),
        ("orchestrator", {"FARM_MAX_QUEUED_JOBS": "7"}, "max_queued_jobs", 7),
    ],
)  # fmt: skip
def test_without_its_flag_a_setting_comes_from_farm_env(
    monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str], name: str, value: Any
) -> None:
    for key, text in env.items():
        monkeypatch.setenv(key, text)
    assert getattr(PARSE[service](["--port", "0"]), name) == value


@pytest.mark.parametrize(
    ("service", "argv", "message"),
    [
        ("render-node", ["--slots", "0"],
         "argument --slots: input should be greater than or equal to 1 (got 0)"),
        ("render-node", ["--port", "70000"], "argument --port: input should be less than"),
        ("render-node", ["--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        ("render-node", ["--frame-timeout", "0"], "argument --frame-timeout: input should be"),
        ("render-node", ["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        ("orchestrator", ["--max-sized-batch", "0"], "argument --max-sized-batch: input should"),
        ("orchestrator", ["--rate-limit", "-1"], "argument --rate-limit: input should be"),
        ("orchestrator", ["--log-level", "loud"], "argument --log-level: invalid choice"),
    ],
)  # fmt: skip
def test_a_bad_flag_value_is_a_one_line_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str], service: str, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        PARSE[service](argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if f"{service}: error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_a_bad_env_value_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FARM_SLOTS", "0")
    with pytest.raises(SystemExit) as exit_info:
        node_cli.parse_settings([])
    assert exit_info.value.code == 2
    assert "FARM_SLOTS: input should be greater than or equal to 1 (got '0')" in (
        capsys.readouterr().err
    )


class Toy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_")

    ratio: float = Field(default=0.5, description="50% is half")
    mode: Literal["a", "b"] = Field(default="a", description="mode")
    where: Path | None = Field(default=None, description="a folder")


def test_flags_come_from_any_settings_class() -> None:
    parser = argparse.ArgumentParser(prog="toy")
    settings_cli.add_settings_flags(parser, Toy)
    assert action_for(parser, "--mode").choices == ("a", "b")
    assert action_for(parser, "--where").type is Path
    assert action_for(parser, "--where").metavar == "DIR"
    assert "50% is half (default: 0.5; TOY_RATIO)" in parser.format_help()
    toy = settings_cli.parse_settings(parser, Toy, ["--mode", "b", "--where", "w"])
    assert (toy.ratio, toy.mode, toy.where) == (0.5, "b", Path("w"))


def test_a_setting_with_no_command_line_form_is_refused_when_building_the_parser() -> None:
    class Odd(BaseSettings):
        pair: tuple[int, int] = Field(default=(1, 2), description="two numbers")

    with pytest.raises(TypeError, match="'pair'"):
        settings_cli.add_settings_flags(argparse.ArgumentParser(), Odd)


@pytest.mark.parametrize(
    ("module", "argv", "out"),
    [
        ("render_node", ["--version"], "render-node "),
        ("orchestrator", ["--help"], "--single-process, --no-single-process"),
    ],
)
def test_python_dash_m_runs_the_same_command(module: str, argv: list[str], out: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert out in done.stdout
