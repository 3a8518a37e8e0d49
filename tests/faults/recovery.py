"""What the fault suite measured, for the summary at the end of the run."""

from __future__ import annotations

MEASURED: list[str] = []


def report(fault: str, what: str, seconds: float, goal: float) -> None:
    verdict = "meets" if seconds <= goal else "MISSES"
    MEASURED.append(f"{fault:<10} {what:<48} {seconds:6.1f} s  (goal ≤ {goal:g} s: {verdict})")
