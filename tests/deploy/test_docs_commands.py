"""Every `ferry ...` command shown in a code block of the docs or the README exists, and so
does every `--flag` it uses."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache

import pytest

from ferry.cli import COMMANDS
from tests.deploy.processes import ROOT

PAGES = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])
SKIPPED_LANGUAGES = {"yaml", "yml", "json", "promql", "toml", "python", "text"}
_FENCE = re.compile(r"^```([\w-]*)\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def code_lines(text: str) -> list[str]:
    """Shell-looking lines of fenced blocks, continuation lines joined, prompts removed."""
    lines: list[str] = []
    for language, body in _FENCE.findall(text):
        if language.lower() in SKIPPED_LANGUAGES:
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                lines.append(line.split(" #", 1)[0])
    return lines


def invocations(line: str) -> list[list[str]]:
    """The arguments after each `ferry` word in command position (after env assignments,
    `&&`, `|`, or a container runner such as `docker compose exec SERVICE`)."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    found: list[list[str]] = []
    for index, token in enumerate(tokens):
        if token != "ferry":
            continue
        before = tokens[:index]
        while before and _ASSIGNMENT.match(before[-1]):
            before.pop()
        if not before or before[-1] in {"&&", "|", ";", "exec", "run"} or "exec" in before:
            found.append(tokens[index + 1 :])
    return found


def documented() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        for line in code_lines(page.read_text()):
            for args in invocations(line):
                out.append((f"{page.name}: ferry {' '.join(args)}"[:120], args))
    return out


@cache
def help_text(*words: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ferry", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


DOCUMENTED = documented()


def test_the_docs_show_ferry_commands() -> None:
    commands = {args[0] for _, args in DOCUMENTED if args}
    assert {"queue-worker", "dead-letters", "kafka-connector"} <= commands


def test_invocations_are_found_behind_assignments_and_runners() -> None:
    assert invocations("nats_url=x ferry publish echo --data hi") == [
        ["publish", "echo", "--data", "hi"]
    ]
    assert invocations("docker compose exec queue-worker ferry dead-letters list") == [
        ["dead-letters", "list"]
    ]
    assert invocations("docker build -t ferry:dev .") == []


def problem(args: list[str]) -> str:
    """Why `ferry ARGS` would not run as documented; empty when it would."""
    args = [a.strip("[]") for a in args]
    if not args:
        return "bare `ferry`"
    command = args[0]
    if command in {"--help", "--version", "-h"}:
        return ""
    if command not in COMMANDS:
        return f"no subcommand {command!r}"
    flags = [a.split("=", 1)[0] for a in args[1:] if a.startswith("--")]
    positionals = [a for a in args[1:] if not a.startswith("-")]
    for flag in flags:
        text = help_text(command)
        if flag not in text and positionals:
            text += help_text(command, positionals[0])
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
            return f"`ferry {command}` has no {flag}"
    return ""


def test_a_missing_subcommand_or_flag_is_caught() -> None:
    assert problem(["queue-wroker"]) == "no subcommand 'queue-wroker'"
    assert problem(["dead-letters", "list", "[--fn", "F]"]) == "`ferry dead-letters` has no --fn"
    assert problem(["dead-letters", "list", "[--function", "F]"]) == ""


@pytest.mark.parametrize(("where", "args"), DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_the_command_exists(where: str, args: list[str]) -> None:
    assert problem(args) == ""
