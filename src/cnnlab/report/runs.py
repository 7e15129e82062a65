"""Runs side by side: what each run folder says about itself, as a table and overlaid curves.

A run folder is a bundle (bundle.json) with the run's history.jsonl (one row per epoch) and
steps.jsonl (step rows). The table has, per run: name, recipe, model, parameters, epochs,
training time, the CPU's vector capability and the precision, the best validation accuracy,
and the figures of any evaluation recorded in the bundle (`cnnlab evaluate --record`,
`cnnlab recalibrate`: bundle.json's `external` blocks). `cnnlab runs` prints it (and
`--plot` draws the curves); the app's Runs page shows the same table and figure. Only
bundle.json and the history files are read: no model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.bundle.catalog import META, bundles_under
from cnnlab.bundle.check import read_meta
from cnnlab.errors import CnnlabError
from cnnlab.fileio import read_capped
from cnnlab.strict import strict_json

HISTORY, STEPS = "history.jsonl", "steps.jsonl"


@dataclass
class RunRecord:
    path: Path
    meta: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def best_val_accuracy(self) -> float | None:
        """The best validation accuracy of any epoch validated, else the bundle's own figure."""
        seen = [r["val_accuracy"] for r in self.history if "val_accuracy" in r]
        if seen:
            return max(seen)
        acc = (self.meta.get("metrics") or {}).get("accuracy")
        return float(acc) if isinstance(acc, int | float) else None

    def external(self) -> list[str]:
        """'name: accuracy 97.1%, AUC 0.981 (n)' for each recorded evaluation."""
        out = []
        for block in self.meta.get("external") or []:
            figures = []
            if isinstance(block.get("accuracy"), int | float):
                figures.append(f"acc {block['accuracy']:.2%}")
            if isinstance(block.get("auc"), int | float):
                figures.append(f"AUC {block['auc']:.3f}")
            for key, short in (("sensitivity", "sens"), ("specificity", "spec")):
                if isinstance(block.get(key), int | float):
                    figures.append(f"{short} {block[key]:.3f}")
            out.append(f"{block.get('name', '?')} ({block.get('n', '?')}): {', '.join(figures)}")
        return out

    def row(self) -> dict[str, Any]:
        """The table's row (JSON values)."""
        training = self.meta.get("training") or {}
        recipe = self.meta.get("recipe") or {}
        best = self.best_val_accuracy()
        return {
            "name": self.name,
            "path": str(self.path),
            "recipe": recipe.get("name", ""),
            "model": (self.meta.get("model") or {}).get("name", ""),
            "params": self.meta.get("params"),
            "epochs": training.get("epochs_run", len(self.history) or None),
            "train_seconds": training.get("seconds"),
            "runtime": compute_text(training),
            "best_val_accuracy": best,
            "external": self.external(),
            "created": self.meta.get("created", ""),
        }

    def curves(self) -> dict[str, Any]:
        """What report.figures.runs_figure draws of this run."""
        return {"name": self.name, "history": self.history, "steps": self.steps}


def compute_text(training: dict[str, Any]) -> str:
    """'AVX2, fp32, 2 threads' from a bundle's training block (older bundles lack the capability)."""
    parts = [p.strip() for p in str(training.get("runtime", "")).split("/")]
    device, precision = (parts + ["", ""])[:2]
    threads = next((p for p in parts if p.endswith("threads")), "")
    if threads == "1 threads":
        threads = "1 thread"
    where = training.get("cpu_capability") if device == "cpu" else device
    return ", ".join(p for p in (where or device, precision, threads) if p)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a history file, read capped (a run folder may come from anyone); a line
    that is not one JSON mapping (cut short by an interrupted run) is skipped."""
    if not path.is_file():
        return []
    try:
        text = read_capped(path).decode(errors="replace")
    except OSError as e:
        raise CnnlabError(f"{path} cannot be read: {e}") from None
    rows = []
    for line in text.splitlines():
        try:
            row = strict_json(line, str(path), nonfinite=True)
        except CnnlabError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_run(path: str | Path) -> RunRecord:
    """One run folder; a folder without a readable bundle.json is a CnnlabError."""
    path = Path(path)
    try:
        meta = read_meta(path, META)
    except CnnlabError as e:
        raise CnnlabError(f"{path} is not a run folder with a readable {META} ({e})") from None
    return RunRecord(path, meta, _jsonl(path / HISTORY), _jsonl(path / STEPS))


def find_runs(folders: list[str | Path]) -> list[RunRecord]:
    """The run folders given, and those under the folders given (two levels), oldest first;
    each listed once. A folder that is neither is a CnnlabError."""
    seen: set[Path] = set()
    runs = []
    for folder in map(Path, folders):
        if (folder / META).is_file():
            found = [folder]
        elif folder.is_dir():
            found = bundles_under(folder)
        else:
            raise CnnlabError(f"no such folder: {folder}")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                runs.append(read_run(path))
    return sorted(runs, key=lambda r: (r.meta.get("created", ""), r.name))


COLUMNS = ("name", "recipe", "model", "params", "epochs", "time", "compute", "best val acc",
           "evaluated")  # fmt: skip


def table_rows(runs: list[RunRecord]) -> list[dict[str, str]]:
    """The rows as text cells, for a terminal or a page (one column per COLUMNS entry)."""
    rows = []
    for run in runs:
        r = run.row()
        rows.append({
            "name": r["name"], "recipe": r["recipe"] or "-", "model": r["model"] or "-",
            "params": f"{r['params']:,}" if isinstance(r["params"], int) else "-",
            "epochs": str(r["epochs"] or "-"),
            "time": f"{r['train_seconds']:.1f} s" if isinstance(r["train_seconds"], int | float) else "-",
            "compute": r["runtime"] or "-",
            "best val acc": f"{r['best_val_accuracy']:.2%}" if r["best_val_accuracy"] is not None else "-",
            "evaluated": "; ".join(r["external"]) or "-",
        })  # fmt: skip
    return rows


def format_runs(runs: list[RunRecord]) -> str:
    """The table as aligned text."""
    if not runs:
        return "no runs found"
    rows = table_rows(runs)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    right = {"params", "epochs", "time", "best val acc"}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(
            cells[c].rjust(widths[c]) if c in right else cells[c].ljust(widths[c]) for c in COLUMNS
        ).rstrip()

    return "\n".join([line({c: c for c in COLUMNS}), *(line(r) for r in rows)])
