"""The functions file and the name lookup the front door relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.core.errors import ConfigError
from connectors.core.settings import iter_specs
from gateway.config import GatewayConfig
from gateway.functions import Function, FunctionList, parse_functions_file

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def test_name_means_the_default_namespace_and_name_dot_namespace_names_one() -> None:
    functions = FunctionList(
        (
            Function("echo", "openfaas-fn", "http://a"),
            Function("echo", "team-b", "http://b"),
            Function("solo", "team-c", "http://c"),
        )
    )
    assert functions.find("echo") == functions.functions[0]
    assert functions.find("echo.team-b") == functions.functions[1]
    assert functions.find("echo.openfaas-fn") == functions.functions[0]
    assert functions.find("solo") is None
    assert functions.find("solo.team-c") == functions.functions[2]
    assert functions.find("missing") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("functions: {}", "top-level 'functions:' list"),
        ("- name: echo", "top-level 'functions:' list"),
        ("functions:\n  - url: http://a", "functions[0].name"),
        ("functions:\n  - name: a.b\n    url: http://a", "functions[0].name"),
        ("functions:\n  - name: echo\n    url: ftp://a", "function echo: url"),
        ("functions:\n  - name: echo\n    url: http://a\n    labels: [x]", "labels"),
        ("functions:\n  - name: echo\n    url: http://a\n    image: [x]", "image must be a string"),
        ("functions: [", "not valid YAML"),
    ],
)
def test_a_bad_functions_file_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "functions.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        parse_functions_file(path)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_functions_file_fields_are_read_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "functions.yml"
    path.write_text(
        "functions:\n"
        "  - name: echo\n    url: http://127.0.0.1:9/echo/\n"
        "    annotations: {com.openfaas.queue: q, n: 1}\n"
        "  - name: other\n    url: https://x.example\n    namespace: ns\n    labels: {a: b}\n"
    )
    echo, other = parse_functions_file(path).functions
    assert echo == Function(
        "echo", "openfaas-fn", "http://127.0.0.1:9/echo", {"com.openfaas.queue": "q", "n": "1"}
    )
    assert other == Function("other", "ns", "https://x.example", {}, {"a": "b"})


def test_docs_list_every_gateway_environment_variable() -> None:
    text = DOCS.read_text()
    for spec in iter_specs(GatewayConfig):
        assert f"| `{spec.env}`" in text, spec.env
