"""The latest decisions as a worklist, riskiest first: what a reader should open next.

First the decisions the model could not vouch for: not screened (unreadable, or refused by
the bundle's rules: a lateral view, a CT slice) and out of distribution (unlike its training
images). Their risk is unknown, so a person must read them unaided; sorted below the
confident normals they would be read last, or never. Then the screened ones by the
probability of the finding, highest first (a binary bundle's p(positive class); a
multi-class bundle has no positive class, so its least certain answers come first). Ties,
and the first group, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.records.store import Decision


def risk(d: Decision) -> float:
    """The screened decision's risk, 0 to 1: p(positive) when it has a threshold (binary),
    else how unsure the label is."""
    p = d.probability if d.probability is not None else 0.0
    return p if d.threshold is not None else 1.0 - p


def by_risk(decisions: Sequence[Decision]) -> list[Decision]:
    newest = sorted(decisions, key=lambda d: d.time, reverse=True)  # stable: ties stay newest first
    return sorted(newest, key=lambda d: (0, 0.0) if attention(d) else (1, -risk(d)))


def finding(d: Decision) -> str:
    """The decision in a few words: its label, or why it was not screened."""
    if not d.screened:
        reason = d.reason or "no reason given"
        return reason if reason.startswith("not screened") else f"not screened: {reason}"
    return d.label or ""


def attention(d: Decision) -> str:
    """Why a person must read it unaided: the model gave no answer to rely on (not screened,
    or out of distribution); "" when its answer stands. It also sorts them first."""
    if not d.screened:
        return "not screened"
    return "unlike the training images" if d.out_of_distribution else ""
