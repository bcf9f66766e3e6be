"""Fault injection for tests of the sweep's failure handling: a `fit()` hook, switched on by $KGSEARCH_FAULT.

"<trial number>@<epoch>[:nan|raise|crash]", comma-separated for several trials: in that epoch the
trial's loss turns NaN (default; fit()'s real divergence path), its training raises (Tune's trial-error
path), or the process dies (a worker: Train restarts the group from its last checkpoint; a direct
trial: Tune retries it, if the sweep allows retries). A crash happens once per trial, marked by a file,
so the restarted trial can go on. Each time a fault fires it adds a line to fired-<trial>-rank<r>, so a
test can count how often a trial trained into it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from kgsearch.errors import KGSearchError
from kgsearch.run.loop import FitHooks

FAULT_ENV = "KGSEARCH_FAULT"
FAULT_KINDS = ("nan", "raise", "crash")


def trial_number(trial_name: str) -> int | None:
    """`t007_ab12cd34` -> 7 (the sweep names trials t<counter>_<id>)."""
    head = trial_name.split("_", 1)[0]
    return int(head[1:]) if head.startswith("t") and head[1:].isdigit() else None


def parse_faults(value: str | None) -> dict[int, tuple[int, str]]:
    """FAULT_ENV -> {trial number: (epoch, kind)}; KGSearchError on a malformed value."""
    faults = {}
    for item in filter(None, (value or "").split(",")):
        spec, _, kind = item.partition(":")
        number, _, epoch = spec.partition("@")
        kind = kind or "nan"
        if not (number.isdigit() and (epoch or "1").isdigit() and kind in FAULT_KINDS):
            raise KGSearchError(f"${FAULT_ENV}={value!r}: expected '<trial number>@<epoch>[:nan|raise|crash]', "
                                "e.g. '2@1' or '2@1:nan,3@2:raise'")
        faults[int(number)] = (int(epoch or 1), kind)
    return faults


def env_fault() -> str | None:
    """The driver reads the hook once (checked) and hands it to trials in their TrialContext."""
    value = os.environ.get(FAULT_ENV) or None
    parse_faults(value)
    return value


class FaultHook(FitHooks):
    def __init__(self, epoch: int, kind: str, marker: Path):
        self.epoch, self.kind, self.marker = epoch, kind, marker

    def _fired(self) -> None:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        fired = self.marker.with_name(self.marker.name.replace("crashed-", "fired-", 1))
        with fired.open("a") as f:
            f.write(f"{self.kind}@{self.epoch}\n")

    def before_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        if self.kind == "raise":
            self._fired()
            raise RuntimeError(f"injected fault in epoch {epoch}")
        if self.kind == "crash" and not self.marker.exists():
            self._fired()
            self.marker.touch()
            os._exit(17)

    def after_train(self, epoch: int, record: dict) -> dict:
        if epoch == self.epoch and self.kind == "nan":
            self._fired()
            return {**record, "loss": math.nan}
        return record


def fault_hooks(value: str | None, trial_name: str, marker_dir: str, rank: int = 0) -> list[FaultHook]:
    """The hook for this trial, if $KGSEARCH_FAULT names it (as a list, to add to fit()'s hooks)."""
    fault = parse_faults(value).get(trial_number(trial_name))
    if fault is None:
        return []
    return [FaultHook(*fault, marker=Path(marker_dir) / f"crashed-{trial_name}-rank{rank}")]
