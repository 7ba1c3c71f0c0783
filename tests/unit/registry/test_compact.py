"""registry.compact: shared values, and the bound on the table."""

from __future__ import annotations

from registry.compact import EMPTY_MAP, Interner
from registry.replication import _Versions


def test_equal_values_come_back_as_one_object() -> None:
    t = Interner()
    web = "web"
    a, b = f"svc-{web}", f"svc-{web}"
    assert a is not b and t.value(a) is t.value(b)
    assert t.strings(["v1", "z0"]) is t.strings(("v1", "z0"))
    assert t.strings([]) == ()
    m1, m2 = t.str_map({"version": "1.0"}), t.str_map({"version": "1.0"})
    assert m1 is m2 and m1 == {"version": "1.0"}
    assert t.str_map({}) is EMPTY_MAP and t.any_map({}) is EMPTY_MAP
    nested = {"lan": {"Address": "10.0.0.1", "Port": 1}}
    assert t.any_map(nested) is nested


def test_the_table_is_bounded() -> None:
    t = Interner(limit=10)
    for i in range(1000):
        assert t.value(f"name-{i}") == f"name-{i}"
    assert len(t) == 10
    zero, last = 0, 999
    first = f"name-{zero}"
    assert t.value(first) is not first  # still shared: it was in before the table filled
    late = f"name-{last}"
    assert t.value(late) is late  # not added once full


def test_versions_behave_as_a_dict_keyed_by_kind_and_id() -> None:
    v = _Versions()
    v[("s", "web1")] = 5
    v[("c", "service:web1")] = 6
    v[("n", "")] = 1
    assert v[("s", "web1")] == 5 and v.get(("s", "nope")) is None and v.get(("x", "y"), 3) == 3
    assert ("c", "service:web1") in v and ("s", "service:web1") not in v and "s" not in v
    assert set(v) == {("s", "web1"), ("c", "service:web1"), ("n", "")}
    assert len(v) == 3 and sorted(v.values()) == [1, 5, 6]
    w = _Versions()
    w[("n", "")] = 1
    w[("c", "service:web1")] = 6
    w[("s", "web1")] = 5
    w[("s", "tmp")] = 9
    assert v != w
    assert w.pop(("s", "tmp")) == 9 and w.pop(("s", "tmp")) is None
    assert v == w  # an emptied kind does not count
