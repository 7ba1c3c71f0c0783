"""Event handler scripts: filter grammar, environment, stdin, query answers, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gossip.errors import ConfigError
from gossip.events import Member, MemberFailed, MemberJoined, QueryReceived, UserEventReceived
from gossip.handlers import Coalescer, EventHandlers, Handler, member_line
from gossip.serf_config import parse_handler_spec


@pytest.mark.parametrize(
    "spec, filters, command",
    [
        ("/bin/true", (("*", ""),), "/bin/true"),
        ("member-join=/x.sh", (("member-join", ""),), "/x.sh"),
        ("member-join,member-leave=/x.sh", (("member-join", ""), ("member-leave", "")), "/x.sh"),
        ("user:deploy=/x.sh arg", (("user", "deploy"),), "/x.sh arg"),
        ("query:load,user=/x", (("query", "load"), ("user", "")), "/x"),
        ("echo a=b", (("*", ""),), "echo a=b"),
    ],
)
def test_handler_spec(spec: str, filters: tuple[tuple[str, str], ...], command: str) -> None:
    assert parse_handler_spec(spec) == (filters, command)


@pytest.mark.parametrize("bad", ["", "member-join=", "bogus=/x", "member-join:x=/x"])
def test_bad_handler_spec(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_handler_spec(bad)


def test_accepts() -> None:
    h = Handler.parse("user:deploy,member-failed=/x")
    assert h.accepts("user", "deploy") and h.accepts("member-failed")
    assert not h.accepts("user", "other") and not h.accepts("member-join")
    assert Handler.parse("/x").accepts("query", "anything")


M = Member(name="n1", addr="10.0.0.1", port=7946, tags={"role": "web", "dc": "x"})


def test_member_line() -> None:
    assert member_line(M) == "n1\t10.0.0.1\tweb\trole=web,dc=x\n"


async def _wait(path: Path, text: str, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while not (path.exists() and text in path.read_text()):
            await asyncio.sleep(0.02)
    return path.read_text()


async def test_scripts_get_env_and_stdin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = tmp_path / "h.sh"
    script.write_text(f'#!/bin/sh\n{{ echo "E=$SERF_EVENT U=$SERF_USER_EVENT L=$SERF_USER_LTIME '
                      f'S=$SERF_SELF_NAME R=$SERF_SELF_ROLE T=$SERF_TAG_ROLE"; cat; echo; }} >> {out}\n')
    script.chmod(0o755)
    h = EventHandlers([f"user:deploy,member-join,member-failed={script}"], self_name="me",
                      tags=lambda: {"role": "db"}, coalesce_period=0, user_coalesce_period=0)
    h.start()
    try:
        h.dispatch(UserEventReceived(name="deploy", payload=b"v1", ltime=7))
        h.dispatch(UserEventReceived(name="ignored", payload=b"x", ltime=8))
        h.dispatch(MemberJoined(M))
        h.dispatch(MemberJoined(Member(name="n2", addr="10.0.0.2", port=1)))
        h.dispatch(MemberFailed(M))
        text = await _wait(out, "E=member-failed")
    finally:
        await h.stop()
    assert "E=user U=deploy L=7 S=me R=db T=db\nv1\n" in text
    assert "ignored" not in text
    # the two joins arrived together: one run, two member lines
    joins = text.split("E=member-join")[1].split("E=member-failed")[0]
    assert "n1\t10.0.0.1\tweb" in joins and "n2\t10.0.0.2\t" in joins
    assert h.counters["handlers.runs"] == 3


async def test_query_handler_output_is_the_answer(tmp_path: Path) -> None:
    answers: list[tuple[str, bytes]] = []
    h = EventHandlers(["query:uptime=echo up-$SERF_QUERY_NAME"], self_name="me", tags=dict,
                      respond=lambda ev, out: answers.append((ev.name, out)))
    h.start()
    try:
        h.dispatch(QueryReceived(name="uptime", payload=b"", ltime=1, id=5, source_node="x",
                                 addr="127.0.0.1", port=1, deadline=1e12))
        async with asyncio.timeout(10):
            while not answers:
                await asyncio.sleep(0.02)
    finally:
        await h.stop()
    assert answers == [("uptime", b"up-uptime\n")]


async def test_slow_script_is_killed_and_failures_counted(tmp_path: Path) -> None:
    h = EventHandlers(["user:slow=sleep 30", "user:bad=exit 3"], self_name="me", tags=dict,
                      timeout=0.3)
    h.start()
    try:
        h.dispatch(UserEventReceived(name="slow", payload=b"", ltime=1))
        h.dispatch(UserEventReceived(name="bad", payload=b"", ltime=2))
        async with asyncio.timeout(10):
            while h.counters["handlers.failed"] < 1:
                await asyncio.sleep(0.02)
    finally:
        await h.stop()
    assert h.counters["handlers.timeouts"] == 1


async def test_queue_is_bounded() -> None:
    h = EventHandlers(["/bin/true"], self_name="me", tags=dict, max_queue=2)
    for i in range(5):  # not started: nothing drains the queue
        h.dispatch(UserEventReceived(name=f"e{i}", payload=b"", ltime=i))
    assert h.counters["handlers.dropped"] == 3


@pytest.mark.parametrize(
    "adds, checks",
    [
        # quiet for 1 s after the last event: released
        ([(0.0, "a", "join"), (0.5, "b", "join")], [(1.4, 0), (1.5, 2)]),
        # a steady stream: released at 3 s after the first anyway
        ([(t / 2, f"n{t}", "join") for t in range(10)], [(2.9, 0), (3.0, 10)]),
        # the latest event of a member wins
        ([(0.0, "a", "join"), (0.1, "a", "failed")], [(1.1, 1)]),
    ],
)
def test_coalescer_timing(adds: list[tuple[float, str, str]], checks: list[tuple[float, int]]) -> None:
    c = Coalescer(3.0, 1.0)
    for t, name, kind in adds:
        m = Member(name=name, addr="1.1.1.1", port=1)
        c.add(name, MemberJoined(m) if kind == "join" else MemberFailed(m), t)
    for t, n in checks:
        out = c.flush(t)
        assert len(out) == n, (t, out)
    if adds[-1][2] == "failed":
        assert isinstance(out[0], MemberFailed)


def test_coalescer_keeps_newest_user_event() -> None:
    c = Coalescer(3.0, 1.0)
    c.add("deploy", UserEventReceived(name="deploy", payload=b"v2", ltime=9), 0.0)
    c.add("deploy", UserEventReceived(name="deploy", payload=b"v1", ltime=8), 0.1)
    (ev,) = c.flush(5.0)
    assert isinstance(ev, UserEventReceived) and ev.payload == b"v2"


async def test_coalesced_member_events_run_once_per_type(tmp_path: Path) -> None:
    out = tmp_path / "out"
    h = EventHandlers([f"echo \"$SERF_EVENT $(wc -l)\" >> {out}"], self_name="me", tags=dict,
                      coalesce_period=0.6, quiescent_period=0.2)
    h.start()
    try:
        for i in range(4):
            h.dispatch(MemberJoined(Member(name=f"n{i}", addr="1.1.1.1", port=i)))
        h.dispatch(MemberFailed(Member(name="n3", addr="1.1.1.1", port=3)))
        text = await _wait(out, "member-failed")
    finally:
        await h.stop()
    assert text.split() == ["member-join", "3", "member-failed", "1"]
