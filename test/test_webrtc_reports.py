"""The viewer page's data-channel messages: valid ones parsed, bad ones named."""

from __future__ import annotations

import json
import re

import pytest

from vr_stream_ros.webrtc.reports import MAX_MESSAGE, MalformedReport, parse_report


def test_a_frame_report_and_a_ping_parse() -> None:
    r = parse_report(json.dumps({"type": "frame", "frame": 7, "capture_ns": "1000",
                                 "stages": {"browser_decoded": "1500", "browser_drawn": 1900}}))
    assert (r.kind, r.frame, r.capture_ns) == ("frame", 7, 1000)
    assert r.stages == {"browser_decoded": 1500, "browser_drawn": 1900}
    p = parse_report(b'{"type": "ping", "id": -1, "t": 12.5}')
    assert (p.kind, p.ping_id, p.ping_t) == ("ping", -1, 12.5)


@pytest.mark.parametrize("message,named", [
    ("nope", "not JSON"), ("[]", "expected a JSON object, got list"),
    ('{"type": 3}', "'type': expected 'ping' or 'frame', got 3"),
    ('{"type": "frame", "frame": -1}', "frame 'frame': expected an integer"),
    ('{"type": "frame", "frame": true}', "frame 'frame': expected an integer"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1e9"}', "'capture_ns': expected ns"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1", "stages": []}', "'stages': expected"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1", "stages": {}}', "'stages': expected"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1", "stages": {"x": "2"}}',
     "unknown stage 'x'"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1", "stages": {"xr_submitted": "-2"}}',
     "stage 'xr_submitted': expected ns"),
    ('{"type": "frame", "frame": 1, "capture_ns": "1", "stages": '
     '{"browser_drawn": "99999999999999"}}', "from its capture"),
    ('{"type": "frame", "frame": 1, "capture_ns": "99999999999999999999", "stages": {}}',
     "not a uint64"),
    ('{"type": "ping", "id": 1, "t": "now"}', "ping 't': expected a number"),
    ('{"type": "ping", "id": 1.5, "t": 1}', "ping 'id': expected an integer"),
    ("{" + " " * MAX_MESSAGE + "}", f"at most {MAX_MESSAGE}"),
])
def test_bad_messages_are_named(message: str, named: str) -> None:
    with pytest.raises(MalformedReport, match=re.escape(named)):
        parse_report(message)
