"""What several commands share: the engine and signature flags, and JSON that strict parsers read."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

from cnnlab.deploy import BACKENDS  # loads nothing heavy: building the parser must not
from cnnlab.errors import CnnlabError

AGO = re.compile(r"^(\d+)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def finite_json(obj):
    """`obj` as plain JSON values, NaN and infinity as null: an undefined figure (the AUC of a
    one-class split) must not make the whole output invalid JSON for strict parsers."""
    import math

    def clean(o):
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    def plain(o):  # numpy/torch scalars and arrays
        return o.tolist() if hasattr(o, "tolist") else float(o)

    return clean(json.loads(json.dumps(obj, default=plain)))


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="inference engine: PyTorch or ONNX Runtime (default torch)")  # fmt: skip
    p.add_argument("--onnx", metavar="FILE",
                   help="with --backend onnx: the exported file (default BUNDLE/model.onnx, "
                   "else an export in memory)")  # fmt: skip


def add_require_signed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--require-signed", metavar="PUBLIC.pem",
                   help="refuse a bundle whose bundle.sig is missing or does not verify with "
                   "this public key (or CA certificate); see `cnnlab sign`")  # fmt: skip


def add_prevalence(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prevalence", type=float, metavar="P",
                   help="the share of positives where the model will be used (e.g. 0.1): PPV "
                   "and NPV there too, by Bayes from sensitivity and specificity, with 95%% "
                   "intervals from their bootstrap")  # fmt: skip


def add_by(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", metavar="FIELD",
                   help="figures per subgroup: a DICOM keyword (ViewPosition, PatientSex, "
                   "Manufacturer...), age_band (from PatientAge), or a column of --meta")  # fmt: skip
    p.add_argument("--meta", metavar="FILE.csv",
                   help="with --by: a CSV with a `file` column (path, class/name or name) and "
                   "the field's column, for images that are not DICOM")  # fmt: skip


def add_no_record(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-record", action="store_true",
                   help="keep these decisions off the record (by default each one goes to the "
                   "decision store: $CNNLAB_RECORDS, else decisions.db in cnnlab's data folder; "
                   "CNNLAB_RECORDS=off turns recording off everywhere; see `cnnlab decisions`)")  # fmt: skip


def check_model_name(ref: str) -> None:
    """Refuse a name no bundle, model, recipe or timm architecture answers to, with the closest
    names, before the command imports torch (seconds): a typo is answered at once."""

    from cnnlab.bundle.catalog import looks_like_bundle, shipped_bundles
    from cnnlab.names import resolve_model, unknown_model

    if looks_like_bundle(ref):
        return
    try:
        resolve_model(ref)
    except CnnlabError:
        raise unknown_model(ref, list(shipped_bundles())) from None


def recipe_file(ref: str) -> str:
    """A recipe file, or a recipe's name (`mnist_fast` for recipes/mnist_fast.yaml); a miss
    names the closest recipes."""
    from pathlib import Path

    from cnnlab.names import did_you_mean, recipe_paths

    if Path(ref).expanduser().exists():
        return ref
    recipes = recipe_paths()
    if ref in recipes:
        return str(recipes[ref])
    stem = Path(ref).stem if Path(ref).suffix.lower() in (".yaml", ".yml") else ref
    hint = did_you_mean(stem, list(recipes))
    raise CnnlabError(f"recipe not found: {ref}{hint}; recipes/ holds the shipped ones")


def when(text: str | None, flag: str) -> datetime | None:
    """A time as people write it (`decisions`, `drift`): an ISO date or date-time (UTC unless
    it says otherwise), or an age (30m, 24h, 7d, 2w) counted back from now."""
    if text is None:
        return None
    ago = AGO.match(text.strip().lower())
    if ago:
        return datetime.now(UTC) - timedelta(**{UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CnnlabError(f"{flag} {text!r}: not a date or time (write 2026-12-05, "
                          "2026-12-05T09:30, 2026-12-05T09:30+01:00, or an age: 24h, 7d)") from None  # fmt: skip
    return found if found.tzinfo else found.replace(tzinfo=UTC)
