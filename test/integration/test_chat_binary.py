"""Binary-safe Socket.IO payloads (SPEC §7, issue 5): a Buffer inside the `data`
of a `signal` between matched partners (BINARY_EVENT with attachments) arrives at
the partner as binary, byte for byte, with its placeholders resolved by the
client; over long-polling ('b' + base64 packets) and over WebSocket (binary
frames), between partners on one worker and across workers (the coordinator's
relay). Driven by the npm socket.io-client@4 (test_chat_driver.js, which reports
received binaries as {"$bin": base64})."""
import base64
import os

from test_chat import chat  # noqa: F401  (fixture)

BLOB = bytes(range(256)) + b"\x00\xff\xfe" * 100  # NULs, bytes that are not UTF-8
SMALL = b"\x00\x01\x02 not text \xc3\x28"


def b64(b):
    return base64.b64encode(b).decode()


def _pick_pairs(d):
    """Connect polling-only clients and default-option (upgraded) clients until
    there is a (polling, websocket) pair owned by one worker and one owned by two
    (the sid names its owner's slot). Bounded: at most 30 of each."""
    polls, ups = [], []
    for i in range(30):
        a, b = "binp%d" % i, "binu%d" % i
        ea = d.connect(a, a, opts={"transports": ["polling"]})
        assert ea["ev"] == "connected" and ea["transport"] == "polling", ea
        eb = d.connect(b, b)  # default options: polling, then the upgrade
        assert eb["ev"] == "connected", eb
        d.expect(lambda e: e.get("name") == b and e["ev"] == "upgrade"
                 and e["transport"] == "websocket", 10, "%s to upgrade" % b)
        polls.append((a, ea["sid"][:2]))
        ups.append((b, eb["sid"][:2]))
        for x, sx in polls:  # two disjoint pairs: (x, y) on one worker, (u, v) on two
            for y, sy in ups:
                if sx != sy:
                    continue
                cross = [(u, v) for u, su in polls for v, sv in ups
                         if su != sv and u != x and v != y]
                if cross:
                    return (x, y), cross[0]
    raise AssertionError("no pair on one worker and across workers: %r %r" % (polls, ups))


def test_binary_signal_relayed_as_binary_polling_websocket_and_across_workers(chat):  # noqa: F811
    d = chat.driver()
    same, cross = _pick_pairs(d)
    for i, (a, b) in enumerate((same, cross)):
        assert d.call(a, "random:join")["status"] == "waiting"
        d.call(b, "random:join")
        m = d.expect(lambda e: e.get("name") == a and e.get("event") == "random:matched")
        assert m["args"][0]["partnerId"] == b
        d.expect(lambda e: e.get("name") == b and e.get("event") == "random:matched")
        blob = BLOB + os.urandom(64)
        # polling sender -> websocket receiver: two attachments, nested
        res = d.call(a, "signal", {"to": b, "data": {
            "sdp": "offer-%d" % i, "blob": {"$bin": b64(blob)},
            "list": [1, {"$bin": b64(SMALL)}]}})
        assert res == {"ok": True}
        got = d.expect(lambda e: e.get("name") == b and e.get("event") == "signal",
                       10, "%s to get the binary signal" % b)["args"][0]
        assert got == {"from": a, "data": {"sdp": "offer-%d" % i, "blob": {"$bin": b64(blob)},
                                           "list": [1, {"$bin": b64(SMALL)}]}}, got
        # websocket sender -> polling receiver: the data itself is the Buffer
        res = d.call(b, "signal", {"to": a, "data": {"$bin": b64(blob[::-1])}})
        assert res == {"ok": True}
        got = d.expect(lambda e: e.get("name") == a and e.get("event") == "signal",
                       10, "%s to get the binary signal" % a)["args"][0]
        assert got == {"from": b, "data": {"$bin": b64(blob[::-1])}}, got
        # text-only signals still arrive as they were
        d.call(b, "signal", {"to": a, "data": {"candidate": "c-%d" % i}})
        got = d.expect(lambda e: e.get("name") == a and e.get("event") == "signal")["args"][0]
        assert got == {"from": b, "data": {"candidate": "c-%d" % i}}
    # a stranger's binary signal is refused, and nothing reaches the partner
    a = cross[0]
    assert d.connect("binx", "binx")["ev"] == "connected"
    res = d.call("binx", "signal", {"to": a, "data": {"$bin": b64(SMALL)}})
    assert res["ok"] is False and res["error"] == "NOT_PARTNER"
    d.drain(0.3)
    assert not d.events(a, "signal")


def test_binary_event_attachments_read_by_the_server_as_base64(chat):  # noqa: F811
    """Events the server reads itself get attachments as base64 text: a Buffer
    room name is refused as a bad room, a Buffer message text is stored as its
    base64 form (not crashing, not dropping the session)."""
    d = chat.driver()
    assert d.connect("bt", "bt", opts={"transports": ["websocket"]})["ev"] == "connected"
    assert d.call("bt", "join", "bin-room") == {"ok": True, "room": "bin-room"}
    res = d.call("bt", "message", {"room": "bin-room", "text": {"$bin": b64(b"hello")}})
    assert res["ok"] is True
    m = d.expect(lambda e: e.get("name") == "bt" and e.get("event") == "message")["args"][0]
    assert m["text"] == b64(b"hello")
    assert d.call("bt", "join", "after-binary")["ok"] is True
