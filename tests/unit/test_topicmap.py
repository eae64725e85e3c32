"""The topic map: subscriptions from annotations, swapped whole; gateway entries read
defensively (one malformed entry is skipped, never fatal)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.core.function_entries import MalformedEntry, parse_entries
from connectors.core.topicmap import (
    MAX_NAMESPACES,
    FunctionInfo,
    GatewayQueryError,
    TopicMap,
    decode_list,
    namespaces_from,
    parse_function,
)


def fn(name: str, topic: str, namespace: str = "openfaas-fn") -> FunctionInfo:
    return FunctionInfo(name=name, namespace=namespace, annotations={"topic": topic})


def test_topics_are_split_on_the_delimiter_and_trimmed() -> None:
    topic_map = TopicMap.build([fn("a", "orders, payments ,"), fn("b", "orders")])
    assert [f.name for f in topic_map.match("orders")] == ["a", "b"]
    assert [f.name for f in topic_map.match("payments")] == ["a"]
    assert topic_map.match("") == ()
    assert topic_map.size == 3


def test_a_custom_delimiter() -> None:
    topic_map = TopicMap.build([fn("a", "x|y")], delimiter="|")
    assert set(topic_map.by_topic) == {"x", "y"}


def test_functions_without_topics_are_listed_but_not_subscribed() -> None:
    topic_map = TopicMap.build([FunctionInfo("plain")])
    assert topic_map.by_topic == {}
    assert topic_map.functions == (FunctionInfo("plain"),)


def test_qualified_names_include_the_namespace() -> None:
    assert fn("a", "t").qualified == "a.openfaas-fn"
    assert FunctionInfo("a").qualified == "a"


def test_gateway_items_parse_with_null_annotations() -> None:
    parsed = parse_function({"name": "f", "annotations": None}, "ns")
    assert parsed == FunctionInfo("f", "ns", {}, {})
    with pytest.raises(MalformedEntry, match="no name"):
        parse_function({"image": "x"}, "ns")


def test_a_repeated_topic_in_one_annotation_subscribes_the_function_once() -> None:
    topic_map = TopicMap.build([fn("a", "t1,t1, t1")])
    assert [f.qualified for f in topic_map.match("t1")] == ["a.openfaas-fn"]


def test_near_duplicate_entries_are_one_function_with_the_topics_of_all() -> None:
    first = FunctionInfo("a", "ns", {"topic": "t1"}, {"v": "1"})
    again = FunctionInfo("a", "ns", {"topic": "t1,t1,t2"}, {"v": "2"})
    third = FunctionInfo("a", "ns", {"topic": "t1"})
    topic_map = TopicMap.build([first, again, third, fn("b", "t1", "ns")])
    assert topic_map.match("t1") == (first, topic_map.match("t1")[1])
    assert [f.qualified for f in topic_map.match("t1")] == ["a.ns", "b.ns"]
    assert topic_map.match("t2") == (first,)  # the first entry stands for the function
    assert [f.qualified for f in topic_map.functions] == ["a.ns", "b.ns"]
    assert topic_map.merged == 2
    assert topic_map.size == 3


def test_the_same_name_in_two_namespaces_is_two_functions() -> None:
    topic_map = TopicMap.build([fn("a", "t", "one"), fn("a", "t", "two")])
    assert [f.qualified for f in topic_map.match("t")] == ["a.one", "a.two"]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"name": "bad", "annotations": ["topic"]}, "annotations is a list"),
        ({"name": "bad", "annotations": "topic=t"}, "annotations is a str"),
        ({"name": "bad", "annotations": 7}, "annotations is a int"),
        ({"name": "bad", "annotations": {"topic": ["t"]}}, "annotations holds a value"),
        ({"name": "bad", "labels": ["x"]}, "labels is a list"),
        ({"name": "bad", "labels": "x"}, "labels is a str"),
        ({"name": "bad", "namespace": 5}, "namespace is a int"),
        ({"name": "bad", "namespace": ["a"]}, "namespace is a list"),
        ({"name": 12}, "no name"),
        (["bad"], "the entry is a list"),
        ("bad", "the entry is a str"),
    ],
)
def test_a_malformed_entry_is_skipped_with_a_reason_and_the_rest_kept(
    entry: object, why: str
) -> None:
    good = {"name": "good", "annotations": {"topic": "t"}}
    found = parse_entries([good, entry, {"name": "later", "annotations": {"topic": "t"}}], "ns")
    assert [f.qualified for f in found.functions] == ["good.ns", "later.ns"]
    assert len(found.skipped) == 1
    assert why in found.skipped[0]


def test_a_skipped_entry_is_named_in_a_bounded_line() -> None:
    found = parse_entries([{"name": "x" * 10_000, "annotations": []}], "ns")
    (line,) = found.skipped
    assert line.startswith("x" * 80 + "...")
    assert len(line) < 200


def test_namespaces_that_are_not_names_are_skipped_with_a_reason() -> None:
    bad = [None, 7, "", {"a": 1}, "a&namespace=b", "b\ud800", "../system", "Upper", "x" * 64]
    usable, skipped = namespaces_from(["good", *bad])
    assert usable == ["good"]
    assert len(skipped) == len(bad)
    assert all(line.isprintable() for line in skipped)  # the lone surrogate is escaped
    assert namespaces_from([None]) == ([""], [namespaces_from([None])[1][0]])
    assert namespaces_from("not a list") == ([""], [])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(json_values, st.sampled_from([None, 0, 2]))
def test_the_item_by_item_decoder_reads_what_json_loads_reads(
    value: object, indent: int | None
) -> None:
    data = json.dumps(value, indent=indent).encode()
    assert decode_list(b" \n" + data + b"\n ", "/x") == json.loads(data)


@pytest.mark.parametrize("data", [b"[1,]", b"[1 2]", b"[1] x", b"[", b"", b"[{]"])
def test_what_is_not_json_is_a_failed_read(data: bytes) -> None:
    with pytest.raises(GatewayQueryError, match="not JSON"):
        decode_list(data, "/system/functions")


def test_a_namespace_list_of_any_length_is_read_up_to_its_bound() -> None:
    usable, skipped = namespaces_from([f"ns{i}" for i in range(300_000)])
    assert len(usable) == MAX_NAMESPACES
    assert skipped == [f"{300_000 - MAX_NAMESPACES} namespaces past the first {MAX_NAMESPACES}"]


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a\ud800"},
        {"name": "../system/x"},
        {"name": "fn/../../system"},
        {"name": "Upper"},
        {"name": "a.b"},
        {"name": "x" * 64},
        {"name": "fn", "namespace": "b\ud800"},
        {"name": "fn", "namespace": "../system"},
        {"name": "fn", "namespace": "a.b"},
    ],
)
def test_names_and_namespaces_the_front_door_refuses_are_skipped(entry: dict[str, str]) -> None:
    found = parse_entries([{**entry, "annotations": {"topic": "t"}}, {"name": "ok"}], "ns")
    assert [fn.qualified for fn in found.functions] == ["ok.ns"]
    (line,) = found.skipped
    assert "DNS-1123" in line
    assert line.isprintable() and len(line) < 300
