"""Webhooks across kill -9: the campaign of `webhooks.py` reduced to two kills,
so that it runs with every test suite and cannot rot, and its checker on
records written by hand, so that every fault it looks for is seen to fail it.

`python -m tests.reliability --only webhooks --kills 10` runs it at full length.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from server.client import Message
from standardwebhooks.webhooks import Webhook
from webhooks.hooks import Received

from .webhooks import Kill, check, kill_campaign


async def test_two_kills_lose_no_event_and_duplicate_only_across_a_kill(tmp_path: Path) -> None:
    # About 10 s: lease_ttl 2 s bounds how long a restarted node waits to take over.
    campaign = await kill_campaign(tmp_path, 2, users=10, seats=4, lease_ttl=2, load=(1.0, 2.0))
    verdict = campaign.verdict
    assert campaign.drained, campaign.problems()
    assert verdict.lost == [], verdict.summary()
    assert verdict.ok, (verdict.summary(), verdict.problems())
    # The run did what it should: events of several kinds flowed through both kills.
    assert verdict.events >= 30, (verdict.summary(), campaign.by_type)
    assert {"seat_granted", "seat_released", "call_started"} <= set(campaign.by_type)
    assert len(campaign.cycles) == 2
    assert all(cycle.delivering for cycle in campaign.cycles), campaign.cycles


# The checker, on hand-written records.

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(event_id: int, kind: str = "seat_granted") -> Message:
    return {
        "id": event_id,
        "at": f"2026-12-02T07:00:{event_id % 60:02d}.000Z",
        "type": kind,
        "user_id": "u1",
        "pool": "desk",
        "seat": 1,
        "device_id": "d1",
    }


def request(logged: Message, at: float, *, status: int | None = 200, **change: str) -> Received:
    """The request that delivers `logged`, received at `at`, signed with SECRET."""
    body = json.dumps({"type": logged["type"], "timestamp": logged["at"], "data": logged})
    webhook_id, stamp = str(logged["id"]), "1795000000"
    signature = Webhook(SECRET).sign(webhook_id, datetime.fromtimestamp(int(stamp), UTC), body)
    fields = {"body": body, "webhook_id": webhook_id, "signature": signature, **change}
    headers = {"content-type": "application/json", "webhook-id": fields["webhook_id"]}
    return Received(
        received_at=at,
        path="/r/hook",
        method="POST",
        webhook_id=fields["webhook_id"],
        timestamp=stamp,
        signature=fields["signature"],
        headers=headers,
        body=fields["body"],
        status=status,
    )


EVENTS = [event(n) for n in (11, 12, 13, 14)]


def in_order(at: float = 100.0) -> list[Received]:
    return [request(e, at + n * 0.1) for n, e in enumerate(EVENTS)]


def test_every_event_once_in_order_passes() -> None:
    verdict = check(EVENTS, in_order(), SECRET)
    assert verdict.ok, verdict.problems()
    assert (verdict.events, verdict.requests, sum(verdict.duplicates.values())) == (4, 4, 0)


def test_an_event_answered_only_with_an_error_is_lost() -> None:
    got = in_order()
    got[2] = request(EVENTS[2], 100.2, status=500)
    verdict = check(EVENTS, got, SECRET)
    assert verdict.lost == [13], verdict.summary()
    assert not verdict.ok


def test_first_arrivals_out_of_id_order_fail() -> None:
    got = in_order()
    got[1], got[2] = got[2], got[1]
    verdict = check(EVENTS, got, SECRET)
    assert verdict.disorder == ["event 12 first arrived after event 13"], verdict.disorder


def test_a_repeat_just_after_a_kill_is_an_explained_duplicate() -> None:
    got = [*in_order()[:3], request(EVENTS[2], 103.0), request(EVENTS[3], 103.1)]
    verdict = check(EVENTS, got, SECRET, [Kill(100.3, "kill 1")])
    assert verdict.ok, verdict.problems()
    assert verdict.duplicates == {13: 1}
    assert verdict.explained_by == {"kill 1": 1}


def test_a_repeat_without_a_kill_between_is_unexplained() -> None:
    got = [*in_order(), request(EVENTS[1], 100.5)]
    verdict = check(EVENTS, got, SECRET, [Kill(200.0, "kill 1")])
    assert len(verdict.unexplained) == 1 and "no kill in between" in verdict.unexplained[0]
    assert not verdict.ok


def test_a_repeat_of_an_event_delivered_long_before_the_kill_is_unexplained() -> None:
    got = [*in_order(), request(EVENTS[0], 120.0)]
    verdict = check(EVENTS, got, SECRET, [Kill(110.0, "kill 1")])
    assert len(verdict.unexplained) == 1 and "more than" in verdict.unexplained[0]


def test_wrong_data_signature_or_event_fail() -> None:
    other = dict(EVENTS[1], seat=2)
    forged = json.dumps({"type": "seat_granted", "timestamp": other["at"], "data": other})
    got = in_order()
    got[0] = request(EVENTS[0], 100.0, signature="v1,AAAA")
    got[1] = request(other, 100.1)  # well signed, but not the logged event
    got[2] = request(EVENTS[2], 100.2, body=forged)  # the body changed after signing
    stray = request(event(10), 100.5)  # before the endpoint existed
    verdict = check(EVENTS, [*got, stray], SECRET)
    assert len(verdict.wrong) == 4, verdict.wrong
    assert "signature" in verdict.wrong[0] and "is not the logged" in verdict.wrong[1]
    assert "signature" in verdict.wrong[2] and "had to get" in verdict.wrong[3]


def test_an_event_logged_after_the_log_was_read_passes_only_if_signed() -> None:
    # The node may log (a capacity alert) and deliver once more after the
    # campaign read the log: the request must still be the signed event it says.
    late = event(15, "pool_recovered")
    forged = request(event(16), 100.7, signature="v1,AAAA")
    body = json.dumps({"type": late["type"], "timestamp": late["at"], "data": late})
    stamp = datetime.fromtimestamp(1795000000, UTC)
    resigned = Webhook(SECRET).sign("17", stamp, body)  # well signed, as another event
    other_id = request(late, 100.8, webhook_id="17", signature=resigned)
    verdict = check(EVENTS, [*in_order(), request(late, 100.6), forged, other_id], SECRET)
    assert verdict.requests == 7 and verdict.lost == [], verdict.summary()
    assert len(verdict.wrong) == 2, verdict.wrong
    assert "signature" in verdict.wrong[0] and "data of event 15" in verdict.wrong[1]
