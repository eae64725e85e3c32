"""The checks the deployment tests rely on: which variables a process reads, and when an
environment is refused."""

from __future__ import annotations

from connectors.core.settings import env_names, read_names
from connectors.sqs.config import SqsConnectorConfig
from queue_worker.config import QueueWorkerConfig
from tests.deploy.processes import env_problems, process_configs


def test_the_long_running_processes_are_the_configured_subcommands() -> None:
    assert set(process_configs()) == {
        "queue-worker",
        "gateway",
        "kafka-connector",
        "sqs-connector",
        "cron-connector",
        "console",
    }


def test_read_names_adds_what_fallbacks_build_values_from() -> None:
    names = read_names(QueueWorkerConfig)
    assert env_names(QueueWorkerConfig) <= names
    assert {"faas_nats_address", "faas_nats_port"} <= names - env_names(QueueWorkerConfig)
    assert {"faas_gateway_address", "faas_gateway_port"} <= names


def test_read_names_adds_the_aws_variables_botocore_reads_for_sqs() -> None:
    names = read_names(SqsConnectorConfig)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= names
    assert "AWS_ACCESS_KEY_ID" not in read_names(QueueWorkerConfig)


def test_an_openfaas_style_environment_is_accepted() -> None:
    env = {"faas_nats_address": "nats.openfaas", "faas_gateway_address": "gateway.openfaas"}
    assert env_problems("queue-worker", env) == []


def test_a_variable_the_process_never_reads_is_reported() -> None:
    problems = env_problems("queue-worker", {"nats_url": "nats://nats:4222", "gatway_url": "x"})
    assert problems == ["ferry queue-worker never reads gatway_url"]


def test_a_value_the_process_refuses_is_reported() -> None:
    [problem] = env_problems("queue-worker", {"max_inflight": "lots"})
    assert "max_inflight" in problem


def test_a_tool_is_not_a_deployable_process() -> None:
    assert env_problems("publish", {}) == ["`ferry publish` is not a long-running process"]
