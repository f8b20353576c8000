"""The verification matrix: each case's expected outcome, what was seen, a printed table.

A `Matrix` runs sign-ins, judges each against what the contract expects
(`Expected`: a welcome as a given user, or a refusal with its code, close
code and the key words of its message), keeps a row per case, and prints
the table `case | expected | seen` that the issue's closing note reports.
The test asserts at the end that every row matched, so that one wrong case
does not hide the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .provider import SignIn

#: Characters of a refusal's message shown in the table.
SHOWN = 130


@dataclass(frozen=True)
class Expected:
    """A welcome as `user_id`, or the refusal `code` / `close` with `words` in its message."""

    code: str | None = None
    close: int | None = None
    words: tuple[str, ...] = ()
    user_id: str | None = None

    @classmethod
    def welcome(cls, user_id: str) -> Expected:
        return cls(user_id=user_id)

    @classmethod
    def unauthorized(cls, *words: str) -> Expected:
        return cls("unauthorized", 4401, words)

    def __str__(self) -> str:
        if self.code is None:
            return "welcome"
        return f"{self.code} {self.close} " + " ".join(f"[{word}]" for word in self.words)

    def mismatch(self, seen: SignIn) -> str | None:
        """Why `seen` is not what was expected; None when it is."""
        try:
            if self.code is None:
                welcome = seen.assert_welcomed()
                user = welcome["user"]["id"]
                assert user == self.user_id, f"welcomed as {user}, expected {self.user_id}"
            else:
                seen.assert_refused(self.code, self.close, *self.words)
        except AssertionError as failed:
            return str(failed)
        return None


@dataclass
class Row:
    case: str
    expected: Expected
    seen: SignIn
    mismatch: str | None


@dataclass
class Matrix:
    rows: list[Row] = field(default_factory=list)

    def record(self, case: str, expected: Expected, seen: SignIn) -> None:
        self.rows.append(Row(case, expected, seen, expected.mismatch(seen)))

    def table(self) -> str:
        lines = [("case", "expected", "seen")]
        for row in self.rows:
            seen = row.seen.summary()
            if len(seen) > SHOWN:
                seen = seen[: SHOWN - 1] + "…"
            mark = "" if row.mismatch is None else "✗ "
            lines.append((row.case, str(row.expected), mark + seen))
        widths = [max(len(line[n]) for line in lines) for n in range(2)]
        return "\n".join(
            f"{case:<{widths[0]}} | {expected:<{widths[1]}} | {seen}"
            for case, expected, seen in lines
        )

    def failures(self) -> list[str]:
        return [f"{row.case}: {row.mismatch}" for row in self.rows if row.mismatch is not None]
