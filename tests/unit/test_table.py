"""Table output and human durations (cases from upstream's duration_test.go)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kplane.apimachinery.table import age, build_table, human_duration, since
from kplane.apiserver.resource import Column

SECOND = 1.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY
MS = 0.001


@pytest.mark.parametrize("seconds, want", [
    (SECOND, "1s"), (70 * SECOND, "70s"), (190 * SECOND, "3m10s"), (70 * MINUTE, "70m"),
    (47 * HOUR, "47h"), (49 * HOUR, "2d1h"), ((8 * 24 + 2) * HOUR, "8d"), (367 * DAY, "367d"),
    ((365 * 2 * 24 + 25) * HOUR, "2y1d"), ((365 * 8 * 24 + 2) * HOUR, "8y"),
])
def test_human_duration(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


@pytest.mark.parametrize("seconds, want", [
    (-2 * SECOND, "<invalid>"), (-2 * SECOND + 1e-9, "0s"), (0, "0s"), (SECOND - MS, "0s"),
    (2 * MINUTE - MS, "119s"), (2 * MINUTE, "2m"), (2 * MINUTE + SECOND, "2m1s"),
    (10 * MINUTE - MS, "9m59s"), (10 * MINUTE, "10m"), (10 * MINUTE + SECOND, "10m"),
    (3 * HOUR - MS, "179m"), (3 * HOUR, "3h"), (3 * HOUR + MINUTE, "3h1m"), (8 * HOUR - MS, "7h59m"),
    (8 * HOUR, "8h"), (8 * HOUR + 59 * MINUTE, "8h"), (2 * DAY - MS, "47h"), (2 * DAY, "2d"),
    (2 * DAY + HOUR, "2d1h"), (8 * DAY - MS, "7d23h"), (8 * DAY, "8d"), (8 * DAY + 23 * HOUR, "8d"),
    (2 * YEAR - MS, "729d"), (2 * YEAR, "2y"), (2 * YEAR + 23 * HOUR + 59 * MINUTE, "2y"),
    (2 * YEAR + DAY - MS, "2y"), (2 * YEAR + DAY, "2y1d"), (3 * YEAR, "3y"), (7 * YEAR, "7y"),
    (8 * YEAR - MS, "7y364d"), (8 * YEAR, "8y"), (8 * YEAR + 364 * DAY, "8y"), (9 * YEAR, "9y"),
])
def test_human_duration_boundaries(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


def test_age_and_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    created = (now - timedelta(minutes=3, seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age({"metadata": {"creationTimestamp": created}}, now) == "3m2s"
    assert age({"metadata": {}}, now) == "<unknown>"
    assert since("2024-05-01T11:59:55.000000Z", now) == "5s"  # MicroTime
    assert since(None, now) == "<unknown>"


COLUMNS = [
    Column("Name", "string", lambda o: o["metadata"]["name"], format="name", description="the name"),
    Column("Data", "string", lambda o: len(o.get("data") or {})),
    Column("Extra", "string", lambda o: "x", priority=1),
]
OBJ = {"kind": "ConfigMap", "apiVersion": "v1", "data": {"a": "1", "b": "2"},
       "metadata": {"name": "cm", "namespace": "default", "resourceVersion": "7"}}


def test_build_table_metadata_rows() -> None:
    table = build_table(COLUMNS, [OBJ], resource_version="9")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "9"}
    assert table["columnDefinitions"][0] == {"name": "Name", "type": "string", "format": "name",
                                             "description": "the name", "priority": 0}
    assert table["columnDefinitions"][2]["priority"] == 1
    assert table["columnDefinitions"][1]["format"] == ""  # every field is present, empty or not
    row = table["rows"][0]
    assert row["cells"] == ["cm", 2, "x"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": OBJ["metadata"]}


def test_build_table_include_object_and_paging() -> None:
    full = build_table(COLUMNS, [OBJ], include_object="Object", continue_token="tok", remaining=3)
    assert full["rows"][0]["object"] is OBJ
    assert full["metadata"] == {"continue": "tok", "remainingItemCount": 3}
    assert build_table(COLUMNS, [OBJ], include_object="None")["rows"][0]["object"] is None
    assert build_table(COLUMNS, [])["rows"] == []
    with pytest.raises(ValueError):
        build_table(COLUMNS, [OBJ], include_object="Bogus")
