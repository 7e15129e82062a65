"""decisions: the decisions on record, listed, exported (CSV, JSON) or rotated into a file of
their own. Reads the store only: no torch, so it starts fast."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from cnnlab.cli.common import when
from cnnlab.errors import CnnlabError

SHOWN = 20  # the table's rows when --limit is not given (exports take every match)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decisions",
        help="list or export the decisions on record (CLI, API, app, PACS); rotate the file",
        description="Every prediction `cnnlab predict`, `cnnlab serve` and the app answer is on "
        "record: when, which surface and client, the input's sha256, DICOM identifiers, the "
        "model and its weights' hash, threshold, temperature, probability, label, the "
        "out-of-distribution distance and the latency. Times are UTC unless they carry an "
        "offset (2026-12-05T09:30+01:00).",
    )
    p.add_argument("--store", metavar="PATH|URL",
                   help="the decision store (default $CNNLAB_RECORDS, else decisions.db in "
                   "cnnlab's data folder); a SQLAlchemy URL such as postgresql://... too")  # fmt: skip
    p.add_argument("--since", metavar="TIME", help="from this time on: 2026-12-05, "
                   "2026-12-05T09:30, or an age such as 24h, 7d, 30m, 2w")  # fmt: skip
    p.add_argument("--until", metavar="TIME", help="before this time (same forms as --since)")
    p.add_argument("--study", metavar="UID", help="one study's decisions (StudyInstanceUID)")
    p.add_argument("--model", metavar="NAME", help="one bundle's decisions, by its name")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"the newest N (default: {SHOWN} in the table, all in an export)")  # fmt: skip
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV on stdout, every field")
    out.add_argument("--json", action="store_true", help="one JSON object on stdout")
    out.add_argument("--rotate", action="store_true",
                     help="move every decision on record into a file of its own beside the "
                     "store (printed), and go on with an empty one; study claims stay")  # fmt: skip
    p.set_defaults(func=cmd_decisions)


def cmd_decisions(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.records.store import FIELDS_SHOWN, DecisionStore, to_url

    since, until = when(args.since, "--since"), when(args.until, "--until")
    if args.limit is not None and args.limit < 1:
        raise CnnlabError(f"--limit must be at least 1, got {args.limit}")
    if args.store and "://" not in args.store and not Path(args.store).is_file():
        raise CnnlabError(f"--store {args.store}: no such file (a decision store, or a URL)")
    store = DecisionStore(to_url(args.store) if args.store else None)
    if args.rotate:
        if any(v is not None for v in (args.since, args.until, args.study, args.model, args.limit)):
            raise CnnlabError("--rotate moves every decision: it takes no filter")
        if not store.query(limit=1):
            print(f"no decisions on record in {store.where}: nothing to rotate", file=sys.stderr)
            return 0
        moved_to, moved = store.rotate()
        print(f"moved {moved} decision{'s' if moved != 1 else ''} to {moved_to}; new decisions "
              f"go on into {store.where}")  # fmt: skip
        return 0
    export = args.csv or args.json
    found = store.query(
        since, until, args.study, args.model, args.limit or (None if export else SHOWN)
    )
    if args.json:
        json.dump({"store": store.where, "decisions": [d.to_dict() for d in found]}, sys.stdout)
        sys.stdout.write("\n")
    elif args.csv:
        rows = [d.to_dict() for d in found]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [],
                                lineterminator="\n")  # fmt: skip
        if rows:
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    else:
        print(table(found, FIELDS_SHOWN))
        more = (
            "" if args.limit or len(found) < SHOWN else f" (the newest {SHOWN}: --limit N for more)"
        )
        print(f"{len(found)} decision{'s' if len(found) != 1 else ''} in {store.where}{more}",
              file=sys.stderr)  # fmt: skip
    return 0


def table(decisions: list, columns: tuple[tuple[str, str], ...]) -> str:
    """The decisions as aligned text columns, newest first."""
    rows = [[heading for heading, _ in columns]]
    for d in decisions:
        rows.append([cell(d, name) for _, name in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


def cell(d, name: str) -> str:
    value = getattr(d, name)
    if name == "time":
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if name == "label" and not d.screened:
        return "not screened"
    if name == "out_of_distribution":
        return {True: "OOD", False: "", None: ""}[value]
    if isinstance(value, float):
        return f"{value:.3f}" if name == "probability" else f"{value:.0f}"
    if name in ("study_uid", "source") and value and len(value) > 40:
        return "..." + value[-37:]
    return "" if value is None else str(value)
