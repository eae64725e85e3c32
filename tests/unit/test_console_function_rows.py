"""The console's Functions rows: one row per function however it is named, counts summed."""

from __future__ import annotations

from asyncq.backlog import FunctionBacklog, QueueBacklog
from console.functions_view import canonical, function_rows


def test_names_that_mean_one_function_make_one_row() -> None:
    assert canonical("echo.openfaas-fn") == "echo"
    assert canonical("echo.other") == "echo.other"
    backlog = QueueBacklog(
        "faas-request",
        0,
        [
            FunctionBacklog("echo", "", "faas-request.fn.echo", 7, 2),
            FunctionBacklog("report.finance", "", "faas-request.fn._h1", 3, -1),
        ],
        0,
    )
    rows = function_rows(
        ["echo.openfaas-fn", "report.finance", "idle.openfaas-fn"],
        {"echo": {"succeeded": 4}, "echo.openfaas-fn": {"succeeded": 1, "failed": 2}},
        backlog,
        ["echo", "echo.openfaas-fn", "report.finance"],
    )
    by_name = {row.name: row for row in rows}
    assert set(by_name) == {"echo", "report.finance", "idle"}
    echo = by_name["echo"]
    assert (echo.stored, echo.in_flight, echo.dead) == (7, 2, 2)
    assert echo.counts == {"succeeded": 5, "failed": 2}
    assert (by_name["report.finance"].stored, by_name["report.finance"].in_flight) == (3, 0)
    assert [row.name for row in rows] == ["echo", "report.finance", "idle"]  # backlog first


def test_a_paused_function_is_marked_even_with_nothing_waiting() -> None:
    rows = function_rows(["echo.openfaas-fn", "other"], {}, None, [], ["echo", "idle"])
    assert {row.name: row.paused for row in rows} == {"echo": True, "other": False, "idle": True}
