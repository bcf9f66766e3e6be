"""The sweep's Optuna study on disk: a journal file in the experiment folder, written by the sweep driver.

    <experiment>/optuna_journal.log     Optuna's JournalStorage (file backend); study name = experiment name

One writer: the driver's searcher (kgsearch.sweep.searcher) appends every ask, report and tell. The file
outlives the sweep, so that

* `--resume --num-samples N` continues the same study: TPE knows every earlier trial;
* a new sweep can start from an old one (`start_from: <experiment folder or its journal>`,
  kgsearch.sweep.warmstart): its first trial is the old study's best COMPLETE trial;
* `importances(journal)` says which searched parameters mattered (Optuna's default evaluator, PED-ANOVA).

With bucket storage (s3://, gs://) the driver cannot append to an object, so the journal lives in a
driver-local folder (`driver_journal`) and its bytes travel in Tune's searcher state, which Tune copies
to the bucket (a resume on another driver writes them out again).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from kgsearch.errors import KGSearchError
from kgsearch.sweep.storage import ExperimentStore

JOURNAL_FILE = "optuna_journal.log"
DRIVER_JOURNALS = Path.home() / ".cache" / "kgsearch" / "journals"


def journal_storage(path: str | Path) -> JournalStorage:
    """A JournalStorage on the file `path` (created, with its folder, when missing)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def cut_partial_line(path: str | Path) -> bool:
    """Drop a last line without its newline (a write cut short), which the next append would glue onto
    and so break the journal for every later read; whether there was one. For the one writer only."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    with path.open("r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True


def open_study(path: str | Path, name: str, sampler, direction: str) -> optuna.Study:
    """The study `name` in the journal at `path` (the driver's, the one writer): created when it is not
    there yet, else loaded."""
    cut_partial_line(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # also in a restored sweep: no "Using an existing study"
    return optuna.create_study(storage=journal_storage(path), study_name=name, sampler=sampler,
                               direction=direction, load_if_exists=True)


def driver_journal(store: ExperimentStore) -> Path:
    """Where the driver keeps the journal of an experiment in a bucket: a folder of its own per URI."""
    digest = hashlib.sha1(store.uri.encode("utf-8")).hexdigest()[:10]
    return DRIVER_JOURNALS / f"{store.name}-{digest}" / JOURNAL_FILE


def journal_path(store: ExperimentStore) -> tuple[str, bool]:
    """(the journal file the driver writes, whether its bytes must travel in Tune's searcher state):
    the experiment folder when it is a local or shared path, else a driver-local folder (a bucket)."""
    if store.local is not None:
        return str(store.local / JOURNAL_FILE), False
    return str(driver_journal(store)), True


def find_journal(path: str | Path) -> Path | None:
    """The journal of `path` (an experiment folder holding one, or the journal file itself), else None."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / JOURNAL_FILE).is_file():
        return (path / JOURNAL_FILE).resolve()
    if path.is_file() and path.name == JOURNAL_FILE:
        return path.resolve()
    return None


def load_study(journal: str | Path) -> optuna.Study:
    """The sweep's study in a journal file: the only one there, or the one named after its folder."""
    journal = Path(journal)
    if not journal.is_file():
        raise KGSearchError(f"{journal}: no such Optuna journal")
    storage = journal_storage(journal)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise KGSearchError(f"{journal}: the journal holds no study")
    name = names[0] if len(names) == 1 else journal.parent.name
    if name not in names:
        raise KGSearchError(f"{journal}: holds studies {', '.join(names)}; none named {name!r} after its folder")
    return optuna.load_study(study_name=name, storage=storage)


def best_complete_trial(journal: str | Path) -> optuna.trial.FrozenTrial:
    """The study's best COMPLETE trial (a pruned trial's value is a short-training one)."""
    study = load_study(journal)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        raise KGSearchError(f"{journal}: the study has no finished (COMPLETE) trial to start from")
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(done, key=lambda t: t.value)


def _at_step(study: optuna.Study, step: int) -> optuna.Study:
    """An in-memory study whose trials are those that reported at `step`, valued by that report."""
    copy = optuna.create_study(direction=study.direction)
    for t in study.get_trials(deepcopy=False):
        value = t.intermediate_values.get(step)
        if value is not None and math.isfinite(value) and t.params:
            copy.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value))
    return copy


def most_reported_step(study: optuna.Study) -> int | None:
    """The epoch at which the most trials reported (ASHA's first rung, where every trial reports)."""
    counts = Counter(step for t in study.get_trials(deepcopy=False) for step in t.intermediate_values)
    if not counts:
        return None
    return max(counts, key=lambda s: (counts[s], s))


def importances(journal_path: str | Path, step: int | None = None) -> dict[str, float]:
    """Parameter importances of the study in `journal_path` ({param: share}, largest first, summing to 1),
    by `optuna.importance.get_param_importances` (its default evaluator, PED-ANOVA, which handles
    conditional parameters).

    `step=None`: from the COMPLETE trials and their best values; `step=k`: from every trial (pruned ones
    included) that reported at epoch k, by that report. {} when fewer than 2 trials qualify."""
    study = load_study(journal_path)
    if step is not None:
        study = _at_step(study, step)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params]
    if len(done) < 2:
        return {}
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}


def importance_lines(journal_path: str | Path) -> list[str]:
    """Printable lines for `python -m kgsearch.sweep.report`: the importances from the COMPLETE trials, or,
    with fewer than 2 of them (ASHA stops most), from every trial at the epoch most trials reported at."""
    found = importances(journal_path)
    how = "COMPLETE trials, best values"
    if not found:
        step = most_reported_step(load_study(journal_path))
        found = importances(journal_path, step=step) if step is not None else {}
        how = f"all trials at epoch {step}"
    if not found:
        return ["parameter importances: fewer than 2 trials to compare"]
    width = max(len(k) for k in found)
    return [f"parameter importances ({how}; Optuna PED-ANOVA):",
            *(f"  {k.ljust(width)}  {v:.3f}" for k, v in found.items())]


__all__ = ["JOURNAL_FILE", "journal_path", "open_study", "find_journal", "load_study", "best_complete_trial",
           "importances", "importance_lines"]
