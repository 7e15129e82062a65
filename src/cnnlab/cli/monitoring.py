"""drift: has what the site sends moved since the model was validated?"""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.cli.common import finite_json, when


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift",
        help="compare a period's decisions with the bundle's validation (PSI, KS, OOD share)",
        description="The decisions on record for a period (or `cnnlab predict --json` logs) "
        "against the bundle's validation split: the population stability index and a "
        "two-sample KS test on p(positive), the share flagged out of distribution against the "
        "validation share (binomial test), the share called positive; then a verdict: drift, "
        "watch or stable.",
    )  # fmt: skip
    p.add_argument("--bundle", help="the bundle whose validation is the reference (default: "
                   "--model, as a shipped name or folder)")  # fmt: skip
    p.add_argument("--model", help="the decisions of this bundle name (default: the bundle's)")
    p.add_argument("--since", help="from this date/time (ISO 8601, UTC) or age (24h, 7d, 2w)")
    p.add_argument("--until", help="before this date/time or age")
    p.add_argument("--records", metavar="URL", help="the decision store (default: "
                   "$CNNLAB_RECORDS, else decisions.db in cnnlab's data folder)")  # fmt: skip
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="read the period from `cnnlab predict --json` outputs instead")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_drift)


def cmd_drift(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.evaluate import drift

    if args.from_json and (args.since or args.until or args.records):
        raise CnnlabError("--since, --until and --records read the decision store; "
                          "--from-json reads logs instead")  # fmt: skip
    reference = drift.reference_for(args.bundle, args.model)
    if args.from_json:
        period = drift.period_from_logs(reference, args.from_json)
    else:
        since, until = when(args.since, "--since"), when(args.until, "--until")
        period = drift.period_from_store(reference, since, until, args.model, args.records)
    report = drift.drift_report(reference, period)
    report["model"] = args.model or reference["name"]
    if args.json:
        json.dump(finite_json(report), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(drift.format_drift(report, report["model"]))
    return 0
