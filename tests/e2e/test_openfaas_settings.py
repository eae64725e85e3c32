"""A process started with OpenFaaS settings ferry does not read names them in one warning line
and runs; the OpenFaaS Pro kafka-connector's flags set the variables they stand for."""

from __future__ import annotations

import argparse
import logging

import pytest

from connectors.core.openfaas_settings import NOT_READ, unread_names
from connectors.core.settings import load_settings, read_names
from connectors.kafka.config import KafkaConnectorConfig
from ferry.commands import kafka_connector
from queue_worker.config import QueueWorkerConfig
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest

PRO_IGNORED = {"tls_insecure": "true", "backoff": "exponential", "max_waiting": "512"}


async def test_unknown_openfaas_settings_are_named_in_one_warning_and_the_worker_runs(
    queue: QueueUnderTest,
) -> None:
    env = queue.env(**PRO_IGNORED, debug="false", nats_durable="faas-workers")
    proc = await FerryProcess("queue-worker", env).start()
    try:
        await eventually(lambda: "serving " in proc.output(), 20, what="start-up")
        await eventually(lambda: "ignoring OpenFaaS settings" in proc.output(), 20, what="warning")
        assert proc.running, proc.output()
        lines = [line for line in proc.output().splitlines() if "OpenFaaS settings" in line]
        assert len(lines) == 1
        assert "backoff, max_waiting, tls_insecure" in lines[0]
        assert "debug" not in lines[0] and "nats_durable" not in lines[0]  # both are read
        assert await proc.stop() == 0, proc.output()
    finally:
        await proc.close()


def test_every_name_the_pro_chart_sets_on_the_worker_is_read_or_warned_about() -> None:
    chart = {
        "scaling_mode": "function",
        "limiter_enabled": "true",
        "consumer_pull_max_messages": "10",
        "consumer_inactive_threshold": "1m",
        "queue_partitions": "2",
        "filter_partition": "0",
        "default_function_name": "figlet",
    }
    read = read_names(QueueWorkerConfig)
    unread = unread_names(QueueWorkerConfig, chart)
    assert unread == ["default_function_name", "filter_partition", "queue_partitions"]
    assert set(chart) == set(unread) | (set(chart) & read)
    config = load_settings(QueueWorkerConfig, chart)
    assert (config.scaling_mode, config.limiter_enabled) == ("fair", True)
    assert (config.consumer_pull_max_messages, config.consumer_inactive_threshold) == (10, 60.0)
    assert load_settings(QueueWorkerConfig, {"mode": "static"}).scaling_mode == "static"


def test_only_names_the_process_does_not_read_are_warned_about() -> None:
    env = {"tls_insecure": "true", "gateway_url": "http://x:8080", "write_debug": "true"}
    assert unread_names(QueueWorkerConfig, env) == ["tls_insecure"]
    every = dict.fromkeys(NOT_READ, "x")
    assert not set(unread_names(QueueWorkerConfig, every)) & read_names(QueueWorkerConfig)
    # the NATS names are read by the processes that use NATS, and warned about elsewhere
    assert "nats_host" not in unread_names(QueueWorkerConfig, every)
    assert "nats_host" in unread_names(KafkaConnectorConfig, every)


def test_pro_aliases_are_read() -> None:
    config = load_settings(
        QueueWorkerConfig, {"debug": "true", "faas_print_body": "true", "nats_durable": "d"}
    )
    assert config.runtime.write_debug is True
    assert config.gateway.print_request_body is True
    assert config.nats_durable == "d"


def test_pro_kafka_flags_set_the_tls_and_sasl_variables() -> None:
    parser = argparse.ArgumentParser()
    kafka_connector.configure(parser)
    args = parser.parse_args(
        [
            "-license-file=/var/secrets/license/license",
            "-tls",
            "-username-file=/s/user",
            "-password-file=/s/password",
            "-ca-file",
            "/s/ca",
        ]
    )
    env = kafka_connector.flag_environ(args, {"topics": "t", "broker_host": "k:9092"})
    config = load_settings(KafkaConnectorConfig, env)
    security = config.security
    assert security.tls is True
    assert (security.sasl_username_file, security.sasl_password_file) == ("/s/user", "/s/password")
    assert security.sasl_mechanism == "plain"
    assert security.tls_ca_file == "/s/ca"
    assert config.kafka.broker_hosts == ("k:9092",)


async def test_a_pro_kafka_flag_with_a_bad_combination_exits_2_naming_the_variable() -> None:
    proc = await FerryProcess(
        "kafka-connector", {"topics": "t", "health_port": "0"}, "-cert-file=/c"
    ).start()
    assert proc.process is not None
    try:
        code = await proc.process.wait()
        output = proc.output().strip()
    finally:
        await proc.close()
    assert code == 2
    assert output.count("\n") == 0 and "tls_cert_file" in output


async def test_a_queue_worker_with_nats_durable_reads_through_that_consumer(
    queue: QueueUnderTest,
) -> None:
    async with queue.worker(nats_durable="custom-workers"):
        info = await queue.js.consumer_info(queue.stream, "custom-workers")
    assert info.name == "custom-workers"


async def test_print_request_body_logs_the_first_4_kib_of_what_a_function_is_sent(
    queue: QueueUnderTest, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"a" * 5000)
    with caplog.at_level(logging.INFO, logger="ferry.invoker"):
        async with queue.worker(faas_print_body="true"):
            await eventually(lambda: gateway.calls_to("echo"), what="the call")
    (line,) = [r.getMessage() for r in caplog.records if "request body" in r.getMessage()]
    assert line == "echo request body: " + "a" * 4096 + "... (904 more bytes)"


def test_help_lists_the_openfaas_settings_a_process_does_not_read_with_the_reason() -> None:
    from ferry.commands import queue_worker

    help_text = queue_worker.EPILOG
    assert "OpenFaaS settings not read" in help_text
    assert "tls_insecure" in help_text and "ferry always verifies TLS certificates" in help_text
    assert "write_debug (debug)" in help_text  # accepted names show as aliases
    after = help_text.split("OpenFaaS settings not read", 1)[1].splitlines()[1:]
    unread = after[: after.index("")] if "" in after else after  # the list ends at a blank line
    assert "tls_insecure" in [line.split()[0] for line in unread]
    assert "gateway_url" not in [line.split()[0] for line in unread]
