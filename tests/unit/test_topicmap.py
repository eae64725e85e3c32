"""The topic map: subscriptions from annotations, swapped whole."""

from __future__ import annotations

from connectors.core.topicmap import FunctionInfo, TopicMap, parse_function


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
    assert parse_function({"image": "x"}, "ns") is None
