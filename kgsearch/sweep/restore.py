"""What an experiment folder holds, read before Ray starts: whether a sweep may start there or resume
from it (and if neither, why, in one line), and what Tune's saved state says about each trial.

Tune's own check (`Tuner.can_restore`) only looks for tuner.pkl, and its copies of the experiment state
to local or NFS storage are not atomic, so a kill can leave files that make `Tuner.restore` die with a
traceback. Here every file a restore reads is checked first; the pickles are walked opcode by opcode
(pickletools, nothing is executed) so a copy cut short is found without unpickling it.
"""

from __future__ import annotations

import json
import pickletools
import re
from dataclasses import dataclass, field

import pyarrow.fs
import yaml
from pydantic import ValidationError

from kgsearch.errors import KGSearchError
from kgsearch.sweep.failures import all_recorded
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore

SPEC_FILE = "sweep.yaml"
# Written into sweep.yaml. 2: before the sweep's own searcher (resumable, failed trials stay failed);
# 3: kgsearch.sweep.searcher (resume re-runs trials that failed for a reason outside them).
SPEC_FORMAT = 3
RESUMABLE_FORMATS = (2, 3)
TUNER_FILE = "tuner.pkl"
TRIAL_FOLDER = re.compile(r"t\d+_\w+$")
TRAIN_RUNS = "_train"  # worker-group trials' Train runs, and the failure records (kgsearch.sweep.failures)


@dataclass
class SavedTrial:
    """One trial as Tune's newest saved experiment state records it."""

    trial_id: str
    status: str  # TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    folder: str  # relative to the experiment
    params: dict = field(default_factory=dict)  # the searched values


def _newest(store: ExperimentStore, prefix: str) -> str | None:
    try:
        listing = store.fs.get_file_info(pyarrow.fs.FileSelector(store.path))
    except (OSError, FileNotFoundError):
        return None
    names = sorted(i.base_name for i in listing if i.base_name.startswith(prefix) and i.type == pyarrow.fs.FileType.File)
    return names[-1] if names else None


def _read(store: ExperimentStore, name: str) -> bytes:
    with store.fs.open_input_stream(f"{store.path}/{name}") as f:
        return f.readall()


def _whole_pickle(data: bytes) -> bool:
    try:
        return bool(data) and any(op.name == "STOP" for op, _, _ in pickletools.genops(data))
    except Exception:  # pickletools raises ValueError and others on a cut-short stream
        return False


def saved_trials(store: ExperimentStore) -> list[SavedTrial] | None:
    """The trials in Tune's newest experiment state; None when there is none; ValueError when unreadable."""
    name = _newest(store, "experiment_state-")
    if name is None:
        return None
    data = json.loads(_read(store, name))
    trials = []
    for entry in data["trial_data"]:
        state = json.loads(entry[0])
        params = state.get("evaluated_params")
        trials.append(SavedTrial(trial_id=state["trial_id"], status=state["status"],
                                 folder=state.get("relative_logdir") or "",
                                 params=params if isinstance(params, dict) else {}))
    return trials


def started(store: ExperimentStore) -> bool:
    """Whether a sweep got as far as Tune's first saved state or a trial folder."""
    if _newest(store, "experiment_state-") is not None:
        return True
    try:
        listing = store.fs.get_file_info(pyarrow.fs.FileSelector(store.path))
    except (OSError, FileNotFoundError):
        return False
    return any(i.type == pyarrow.fs.FileType.Directory and TRIAL_FOLDER.match(i.base_name) for i in listing)


def damage(store: ExperimentStore) -> str | None:
    """What keeps a started experiment from being resumed, or None when every file a restore reads is whole."""
    if not store.is_file(SPEC_FILE):
        return f"{SPEC_FILE} is missing"
    try:
        stored = yaml.safe_load(store.read_text(SPEC_FILE))
        if stored.get("format") in RESUMABLE_FORMATS:  # an older one is refused by name in plan()
            SweepSpec.model_validate(stored["spec"])
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError, TypeError, KeyError, ValidationError):
        return f"{SPEC_FILE} is damaged"
    if not store.is_file(TUNER_FILE) or not _whole_pickle(_read(store, TUNER_FILE)):
        return f"Tune's {TUNER_FILE} is missing or cut short"
    state = _newest(store, "experiment_state-")
    if state is None:
        return "Tune saved no experiment state (experiment_state-*.json)"
    try:
        saved_trials(store)
    except (ValueError, KeyError, IndexError, TypeError):
        return f"Tune's {state} is cut short or damaged"
    for prefix in ("search_gen_state-", "searcher-state-"):
        name = _newest(store, prefix)
        if name is None or not _whole_pickle(_read(store, name)):
            return f"Tune's searcher state ({name or prefix + '*'}) is missing or cut short"
    return None


def plan(store: ExperimentStore, resume: bool | str) -> str:
    """'start' or 'resume' for `--resume` = False, True or 'auto'; a one-line KGSearchError when neither works."""
    exp = store.local or store.uri
    if not started(store):
        if resume is True:
            what = "no sweep to resume" if not store.exists(SPEC_FILE) else "a sweep that never started a trial"
            raise KGSearchError(f"--resume: {exp} holds {what}; run the same command without --resume "
                                "(or with --resume auto) to start it")
        return "start"
    broken = damage(store)
    if not resume:
        why = f" (it cannot be resumed: {broken})" if broken else ""
        hint = "pass --name NEW for a new experiment" if broken else \
            "pass --resume to continue it, or --name NEW for a new experiment"
        raise KGSearchError(f"{exp} already holds a sweep{why}; {hint}")
    stored = None if broken and broken.startswith(SPEC_FILE) else yaml.safe_load(store.read_text(SPEC_FILE))
    if isinstance(stored, dict) and stored.get("format") not in RESUMABLE_FORMATS:
        raise KGSearchError(f"--resume: {exp} was started by an older kgsearch (before the kgsearch.sweep "
                            "package) and cannot be resumed by this one; start it again with --name NEW")
    if broken:
        raise KGSearchError(f"--resume: {exp} cannot be resumed: {broken}. Its finished trials stay in their "
                            "folders; start a new experiment with --name NEW")
    return "resume"


def grown_samples(stored: dict, requested: int | None, add: bool) -> tuple[int, int]:
    """(num_samples the sweep had, num_samples it resumes with) for `--resume --num-samples N` (`add`: N
    more trials) or `--resume auto --num-samples N` (N in all, never below the old count); a KGSearchError
    in one line when the sweep cannot grow that way."""
    planned = int(stored["spec"]["num_samples"])
    if requested is None:
        return planned, planned
    wanted = planned + requested if add else requested
    flag = f"--num-samples {requested}"
    if wanted < planned:
        raise KGSearchError(f"--resume auto {flag}: the sweep already has num_samples {planned} and can only "
                            f"grow; pass a total above {planned}, or --resume --num-samples N for N more trials")
    if wanted > planned and stored.get("format") != SPEC_FORMAT:
        raise KGSearchError(f"--resume {flag}: this sweep was started by an older kgsearch, whose searcher "
                            "cannot add trials; start a new experiment with --name NEW")
    return planned, wanted


def rerun_candidates(store: ExperimentStore) -> list[dict]:
    """The failure records of trials that failed from outside them and were not run again yet."""
    records = all_recorded(store.join(TRAIN_RUNS)).values()
    return sorted((r for r in records if r["transient"] and not r["rerun"]), key=lambda r: (r.get("trial", ""), r["trial_id"]))


def unfinished_trials(store: ExperimentStore) -> set[str]:
    """Ids of trials that `--resume` would continue: RUNNING/PENDING/PAUSED in Tune's saved experiment
    state (after Ctrl-C, Tune's in-memory trials read TERMINATED but the saved state says RUNNING)."""
    try:
        trials = saved_trials(store) or []
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return set()  # an unknown state format: report every trial as Tune's results say
    return {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
