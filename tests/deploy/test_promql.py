"""The PromQL name extraction the dashboard test relies on."""

from __future__ import annotations

from tests.deploy.promql import exported_names, metric_names


def test_names_come_out_of_functions_matchers_ranges_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, function) (rate(x_seconds_bucket{status!~"5.."}'
        "[$__rate_interval]))) / on (instance) group_left sum(y_total offset 5m) > bool 2"
    )
    assert metric_names(expr) == {"x_seconds_bucket", "y_total"}


def test_label_values_and_keywords_are_not_names() -> None:
    expr = 'sum without (pod) (a{job="rate", le="+Inf"}) and b unless c or max(d) by (e)'
    assert metric_names(expr) == {"a", "b", "c", "d"}


def test_exported_names_follow_each_family_type() -> None:
    page = "\n".join(
        [
            "# HELP c_total help",
            "# TYPE c_total counter",
            "# HELP h help",
            "# TYPE h histogram",
            'h_bucket{le="+Inf"} 0',
            "h_sum 0",
            "h_count 0",
            "# HELP g help",
            "# TYPE g gauge",
            "g 1",
            "",
        ]
    )
    names = exported_names(page)
    assert {"c_total", "h_bucket", "h_sum", "h_count", "g"} <= names
    assert "g_bucket" not in names and "c_bucket" not in names and "h_total" not in names
