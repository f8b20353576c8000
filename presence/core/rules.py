"""The licensing rules an administrator's change must keep.

Every admin change computes the domain's state as it would be afterwards and
asks :func:`check_domain` whether it is allowed; a refused change is not
written, so it changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BadRequest, RuleViolation
from .model import Domain, License, Pool


def check_domain(domain: Domain, pools: Sequence[Pool], named_users: int) -> None:
    """Raise :exc:`RuleViolation` if the domain would break a rule.

    ``pools`` and ``named_users`` are the domain's pools and the number of
    users with a named license, as they would be after the change.
    """
    if domain.plan != "enterprise" and (domain.seat_licenses > 0 or pools):
        raise RuleViolation(
            "plan_required",
            f"Seat licenses and seat pools need the enterprise plan; {domain.name} "
            f"is on {domain.plan}" + (f" and has {len(pools)} pools." if pools else "."),
        )
    if named_users > domain.named_licenses:
        raise RuleViolation(
            "license_limit",
            f"{domain.name} has {domain.named_licenses} named licenses, which "
            f"would not cover its {named_users} named users.",
        )
    seats = sum(pool.seats for pool in pools)
    if seats > domain.seat_licenses:
        raise RuleViolation(
            "seats_exceed_licenses",
            f"The pools of {domain.name} would hold {seats} seats, more than its "
            f"{domain.seat_licenses} seat licenses.",
        )


def check_license(
    domain: Domain, license: License, pools: Sequence[Pool], field: str = "license"
) -> None:
    """Raise if a seat license is given outside enterprise or names no pool
    (:exc:`BadRequest` on ``field``'s pool)."""
    if license.model != "seat":
        return
    if domain.plan != "enterprise":
        raise RuleViolation(
            "plan_required",
            f"Seat licenses need the enterprise plan; {domain.name} is on {domain.plan}.",
        )
    if all(pool.id != license.pool for pool in pools):
        raise BadRequest(f"{field}.pool", f"There is no pool {license.pool!r}.")
