"""What devices observed of their seats, and the per-seat history checker.

Clients record every grant they were told of (`Grant`: the seat, lease and
fencing token of a `welcome`, when it was asked for and when it came, and how
the holder's belief in it ended) and every proof that a lease still existed
(`Proof`: a `call_started` or `call_ended` answer, or the lease seen in a
presence snapshot, which the server only gives while the lease is stored).
All times are one process's monotonic clock.

`check` finds, per seat, with no knowledge of the server's insides:

- *double holders*, proven: a lease shown to exist after a lease of the same
  seat with a higher fencing token was granted. Leases never come back once
  ended, so both existed at that grant.
- *overlaps*: a holder that still believed in its seat (no `session_ended`,
  no `bye`, connection open, lease promised by its last `heartbeat_ack`) more
  than `grace` seconds after the next holder of the seat was welcomed; the
  grace absorbs the delivery of the two messages of one change (a takeover
  ends one session and welcomes the other at once).
- *fencing order*: a grant welcomed before another was even asked for must
  carry the lower token; no two grants of a seat share a token.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Grant:
    """A seat grant as its holder saw it."""

    user: str
    device: str
    pool: str
    seat: int
    lease_id: str
    fencing_token: int
    asked: float  # the hello or acquire that got it was sent
    welcomed: float  # the welcome arrived
    ended: float | None = None  # session_ended or bye arrived
    end_reason: str | None = None
    let_go: float | None = None  # the holder sent logout, or dropped its connection
    lost: float | None = None  # the connection closed under it
    promised: float = -math.inf  # the latest heartbeat_ack's promise: sent + expires_in
    lease_ttl: float = math.inf

    @property
    def seat_key(self) -> tuple[str, int]:
        return (self.pool, self.seat)

    @property
    def believed_until(self) -> float:
        """Until when the holder may rightly believe it holds the seat."""
        return self.belief_end[0]

    @property
    def belief_end(self) -> tuple[float, str]:
        """When and how the holder's belief in its seat ended."""
        # The welcome promised the lease for lease_ttl from its grant, which came
        # after the request was sent; an ack, for expires_in after its heartbeat.
        ends = [(max(self.promised, self.asked + self.lease_ttl), "its last promise ran out")]
        told = (self.ended, f"told {self.end_reason}")
        for at, how in (told, (self.let_go, "let go"), (self.lost, "connection lost")):
            if at is not None:
                ends.append((at, how))
        return min(ends)


@dataclass(frozen=True)
class Proof:
    """Lease `lease_id` existed at some moment at or after `at`."""

    lease_id: str
    at: float
    how: str


@dataclass
class Verdict:
    grants: int = 0
    seats: int = 0
    double_holders: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    fencing: list[str] = field(default_factory=list)
    longest_overlap: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.double_holders or self.overlaps or self.fencing)

    def summary(self) -> str:
        return (
            f"{self.grants} grants on {self.seats} seats: {len(self.double_holders)} proven "
            f"double holders, {len(self.overlaps)} overlaps beyond the grace, "
            f"{len(self.fencing)} fencing-order faults"
        )


def check(grants: Iterable[Grant], proofs: Iterable[Proof], grace: float = 1.0) -> Verdict:
    """Check every seat's history; see the module docstring."""
    by_seat: dict[tuple[str, int], list[Grant]] = defaultdict(list)
    for grant in grants:
        by_seat[grant.seat_key].append(grant)
    last_proof: dict[str, float] = {}
    for proof in proofs:
        last_proof[proof.lease_id] = max(last_proof.get(proof.lease_id, -math.inf), proof.at)
    verdict = Verdict(grants=sum(len(g) for g in by_seat.values()), seats=len(by_seat))
    for seat, history in sorted(by_seat.items()):
        _check_seat(seat, history, last_proof, grace, verdict)
    return verdict


def _check_seat(
    seat: tuple[str, int],
    history: list[Grant],
    last_proof: dict[str, float],
    grace: float,
    verdict: Verdict,
) -> None:
    where = f"{seat[0]} seat {seat[1]}"
    in_token_order = sorted(history, key=lambda g: g.fencing_token)
    for before, after in zip(in_token_order, in_token_order[1:], strict=False):
        if before.fencing_token == after.fencing_token:
            verdict.fencing.append(f"{where}: token {after.fencing_token} granted twice")
    # Proven double holders: a lease alive after a higher token's welcome.
    best: tuple[float, Grant] | None = None  # the latest proof among lower tokens
    for grant in in_token_order:
        if best is not None and best[0] > grant.welcomed:
            proven, holder = best
            verdict.double_holders.append(
                f"{where}: lease {holder.lease_id} (token {holder.fencing_token}) existed "
                f"{proven - grant.welcomed:.3f} s after token {grant.fencing_token} was welcomed"
            )
        proof = last_proof.get(grant.lease_id)
        if proof is not None and (best is None or proof > best[0]):
            best = (proof, grant)
    # Overlaps of belief: each holder against every later one welcomed while it believed.
    believed = -math.inf
    believer: Grant | None = None
    for grant in in_token_order:
        if believer is not None and believed > grant.welcomed:
            overlap = believed - grant.welcomed
            verdict.longest_overlap = max(verdict.longest_overlap, overlap)
            if overlap > grace:
                verdict.overlaps.append(
                    f"{where}: {believer.user} on {believer.device} (token "
                    f"{believer.fencing_token}) believed it held the seat {overlap:.3f} s "
                    f"after {grant.user} on {grant.device} (token {grant.fencing_token}) "
                    f"was welcomed, until {believer.belief_end[1]}"
                )
        if grant.believed_until > believed:
            believed, believer = grant.believed_until, grant
    # Fencing order: a grant welcomed before another was asked for has the lower token.
    in_time_order = sorted(history, key=lambda g: g.welcomed)
    welcomed_at = [g.welcomed for g in in_time_order]
    highest_so_far: list[Grant] = []
    for grant in in_time_order:
        if not highest_so_far or grant.fencing_token > highest_so_far[-1].fencing_token:
            highest_so_far.append(grant)
        else:
            highest_so_far.append(highest_so_far[-1])
    for grant in history:
        earlier = bisect.bisect_left(welcomed_at, grant.asked)
        if earlier and highest_so_far[earlier - 1].fencing_token > grant.fencing_token:
            other = highest_so_far[earlier - 1]
            verdict.fencing.append(
                f"{where}: token {other.fencing_token} was welcomed before token "
                f"{grant.fencing_token} was asked for"
            )
