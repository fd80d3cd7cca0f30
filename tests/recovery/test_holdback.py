"""`Holdback`: held packets while a session is restored, then late copies dropped once."""

from __future__ import annotations

from typing import Any

from engineio import packet as eio_packet
from socketio import packet

from engine.recovery.holdback import Holdback, event_offset


def encoded(data: list[Any], namespace: str = "/", id: int | None = None) -> list[Any]:
    found = packet.Packet(packet.EVENT, data=data, namespace=namespace, id=id).encode()
    return found if isinstance(found, list) else [found]


def raw(data: list[Any], namespace: str = "/") -> list[eio_packet.Packet]:
    return [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded(data, namespace)]


def test_the_offset_of_an_encoded_event() -> None:
    assert event_offset(encoded(["tick", {"n": 1}, "17-3"])[0]) == ("/", "17-3", 0)
    assert event_offset(encoded(["tick", "17-3"], "/chat")[0]) == ("/chat", "17-3", 0)
    assert event_offset(encoded(["blob", b"\x00", "17-4"])[0]) == ("/", "17-4", 1)
    assert event_offset(encoded(["tick", "17-3"], id=5)[0]) is None  # asks an ack
    assert event_offset(encoded(["tick", 1])[0]) is None  # no offset
    assert event_offset('0{"sid":"x"}') is None


def test_held_until_done_then_replayed_ones_dropped() -> None:
    hb = Holdback()
    hb.hold("e", "/")
    packets = [*raw(["tick", "1-1"]), *raw(["blob", b"\x01", "1-2"]), *raw(["tick", "1-3"])]
    for p in packets:
        assert hb.put("e", True, p)
    assert hb.put("e", False, "connect-reply")
    assert hb.done("e", "/", ["1-1", "1-2"])
    out = []
    while (item := hb.next("e")) is not None:
        out.append(item[1])
    assert out == [packets[3], "connect-reply"]  # the binary event's attachment dropped too
    assert not hb.holding("e")
    # a late copy of a replayed event (another node, through the broker) is dropped once
    assert hb.late_copy("e", raw(["tick", "1-1"])[0])
    assert not hb.late_copy("e", raw(["tick", "1-1"])[0])
    late_blob = raw(["blob", b"\x01", "1-2"])
    assert [hb.late_copy("e", p) for p in late_blob] == [True, True]
    assert not hb.late_copy("e", raw(["tick", "1-5"])[0])


def test_two_namespaces_restoring_on_one_session() -> None:
    hb = Holdback()
    hb.hold("e", "/")
    hb.hold("e", "/chat")
    first = raw(["tick", "1-1"])[0]
    hb.put("e", True, first)
    assert not hb.done("e", "/", [])  # /chat still restoring: keep holding
    assert hb.put("e", True, raw(["tick", "2-1"], "/chat")[0])
    assert hb.done("e", "/chat", ["2-1"])
    assert hb.next("e") == (True, first)
    assert hb.next("e") is None
    assert not hb.holding("e")
