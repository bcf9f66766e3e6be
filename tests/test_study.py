"""The persistent study (kgsearch.sweep.study): the searcher's Optuna study in a journal file that outlives
Tune's state. Create, tell, pickle and restore (Tune's tuner.pkl and searcher state), a second searcher
on the same journal, a killed driver's leftovers, a moved experiment folder, bucket storage, searcher
states saved by an older kgsearch, `start_from` an earlier experiment, parameter importances, and
`--resume --num-samples` checks. No Ray."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
from optuna.trial import TrialState

from kgsearch.errors import KGSearchError
from kgsearch.sweep.searcher import OptunaSearcher, make_search_alg
from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import ChoiceParam, LogUniformParam, UniformParam
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.study import (JOURNAL_FILE, best_complete_trial, find_journal, importance_lines, importances,
                                  journal_path, load_study)

SPACE = {"lr": LogUniformParam(type="loguniform", low=1e-4, high=1e-1)}
MAX_T = 4


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def searcher(journal, max_t: int = MAX_T, space=None, **kw) -> OptunaSearcher:
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2)
    return OptunaSearcher(optuna_space(space or SPACE), "val_mrr", "max", sampler, max_t=max_t,
                          journal=str(journal) if journal else None, study_name="exp", **kw)


def result(epoch: int, value: float) -> dict:
    return {"val_mrr": value, "epochs_done": epoch, "training_iteration": epoch, "best_val_mrr": value}


def finish(s: OptunaSearcher, trial_id: str, curve: list[float]) -> None:
    s.suggest(trial_id)
    for epoch, value in enumerate(curve, 1):
        s.on_trial_result(trial_id, result(epoch, value))
    s.on_trial_complete(trial_id, result=result(len(curve), curve[-1]))


def states(journal) -> list[TrialState]:
    return [t.state for t in load_study(journal).trials]


def test_the_study_is_written_to_the_journal_as_it_goes(tmp_path):
    journal = tmp_path / "exp" / JOURNAL_FILE
    s = searcher(journal)
    assert not journal.exists()  # opened on first use: building (and pickling) the Tuner writes nothing
    finish(s, "a", [0.3, 0.6, 0.5, 0.55])
    s.suggest("b")
    s.on_trial_result("b", result(1, 0.2))
    s.on_trial_complete("b", result=result(2, 0.25))  # ASHA stopped it at epoch 2 of 4
    study = load_study(journal)  # another reader of the file
    assert study.study_name == "exp"
    (a, b) = study.trials
    assert a.state == TrialState.COMPLETE and a.value == pytest.approx(0.6)
    assert a.intermediate_values == {1: 0.3, 2: 0.6, 3: 0.5, 4: 0.55}
    assert b.state == TrialState.PRUNED and b.intermediate_values == {1: 0.2, 2: 0.25}


def test_pickle_and_restore_keep_the_study(tmp_path):
    journal = tmp_path / "exp" / JOURNAL_FILE
    s = searcher(journal, start_values={"lr": 0.003})
    at_build = pickle.dumps(s)  # tuner.pkl: before any trial
    finish(s, "a", [0.4, 0.5, 0.6, 0.7])
    s.suggest("b")
    s.on_trial_result("b", result(1, 0.3))
    s.save(str(tmp_path / "state.pkl"))  # Tune's searcher state: "b" is running
    state = pickle.load(open(tmp_path / "state.pkl", "rb"))
    assert "_study" not in state and state["journal"] == str(journal)  # the path, not an open storage

    restored = pickle.loads(at_build)
    restored.restore(str(tmp_path / "state.pkl"))
    assert [t.state for t in restored.study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    restored.on_trial_result("b", result(2, 0.35))
    restored.on_trial_complete("b", result=result(4, 0.9))
    c = restored.suggest("c")
    assert c != {"lr": 0.003}  # the warm start was suggested before the save: not again
    assert states(journal) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    assert load_study(journal).trials[1].intermediate_values == {1: 0.3, 2: 0.35, 4: 0.9}


def test_a_write_cut_short_does_not_break_the_journal(tmp_path):
    journal = tmp_path / JOURNAL_FILE
    finish(searcher(journal), "a", [0.1, 0.2, 0.3, 0.4])
    with journal.open("ab") as f:
        f.write(b'{"op_code":5,"worker_id":"x","trial_id":0')  # a kill in the middle of an append
    s = searcher(journal)  # the next driver
    finish(s, "b", [0.5, 0.6, 0.7, 0.8])
    assert [t.value for t in load_study(journal).trials] == [pytest.approx(0.4), pytest.approx(0.8)]


def test_a_lost_journal_does_not_stop_the_sweep(tmp_path):
    journal = tmp_path / JOURNAL_FILE
    s = searcher(journal)
    s.suggest("a")
    s.save(str(tmp_path / "state.pkl"))
    journal.unlink()  # deleted by hand, or a bucket experiment resumed from a state without it
    restored = searcher(journal)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_result("a", result(1, 0.5))  # a trial the new study does not know is left alone
    restored.on_trial_complete("a", result=result(4, 0.5))
    finish(restored, "b", [0.1, 0.2, 0.3, 0.4])
    assert [t.value for t in load_study(journal).trials] == [pytest.approx(0.4)]


def test_a_second_searcher_on_the_same_journal_continues_the_study(tmp_path):
    journal = tmp_path / JOURNAL_FILE
    first = searcher(journal)
    for i, top in enumerate([0.5, 0.8, 0.6]):
        finish(first, f"t{i}", [top / 2, top, top, top])
    second = searcher(journal)  # a new driver on the same experiment: TPE sees every earlier trial
    assert len(second.study.trials) == 3 and second.study.best_value == pytest.approx(0.8)
    second.suggest("t3")
    assert [t.number for t in load_study(journal).trials] == [0, 1, 2, 3]


def test_trials_a_killed_driver_asked_after_tunes_last_save_are_failed(tmp_path):
    journal = tmp_path / JOURNAL_FILE
    s = searcher(journal)
    s.suggest("a")
    s.save(str(tmp_path / "state.pkl"))  # Tune saved while "a" ran
    finish(s, "b", [0.1, 0.2, 0.3, 0.4])  # ... then "b" ran and
    s.suggest("c")  # "c" started; the driver is killed
    s.on_trial_complete("a", result=result(4, 0.5))  # "a" finished in the journal after the save

    restored = pickle.loads(pickle.dumps(searcher(journal)))
    restored.restore(str(tmp_path / "state.pkl"))
    assert [t.state for t in restored.study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    restored.on_trial_result("a", result(3, 0.2))  # Tune runs "a" again: a finished trial takes no reports
    restored.on_trial_complete("a", result=result(4, 0.6))
    assert load_study(journal).trials[0].value == pytest.approx(0.5)


def test_a_restore_reopens_the_journal_where_the_experiment_is_now(tmp_path):
    old, new = tmp_path / "old" / JOURNAL_FILE, tmp_path / "new" / JOURNAL_FILE
    s = searcher(old)
    s.suggest("a")
    s.save(str(tmp_path / "state.pkl"))
    new.parent.mkdir()
    old.rename(new)  # the experiment folder was moved
    restored = searcher(old)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.relocate(str(new))  # what SweepSearchGenerator.restore_from_dir does with on_restore(journal=...)
    restored.on_trial_complete("a", result=result(4, 0.7))
    assert load_study(new).trials[0].value == pytest.approx(0.7) and not old.exists()


def test_a_bucket_experiments_journal_travels_in_the_searcher_state(tmp_path, monkeypatch):
    class Remote(ExperimentStore):  # a bucket without the network: a store that is not local
        local = None

    monkeypatch.setattr("kgsearch.sweep.study.DRIVER_JOURNALS", tmp_path / "driver")
    store = Remote(str(tmp_path / "bucket"), "exp")
    path, carry = journal_path(store)
    assert carry and path.startswith(str(tmp_path / "driver")) and path.endswith(JOURNAL_FILE)
    s = searcher(path, carry_journal=True)
    finish(s, "a", [0.2, 0.4, 0.6, 0.8])
    s.save(str(tmp_path / "state.pkl"))
    staging = tmp_path / "staging"  # Tune's driver staging folder, which Tune copies to the bucket whole
    staging.mkdir()
    s.save_to_dir(str(staging))
    assert load_study(staging / JOURNAL_FILE).trials[0].value == pytest.approx(0.8)  # a copy goes with it
    local = searcher(tmp_path / "exp" / JOURNAL_FILE)  # a local experiment: the journal is written in place
    local.suggest("a")
    (tmp_path / "staging-local").mkdir()
    local.save_to_dir(str(tmp_path / "staging-local"))
    assert not (tmp_path / "staging-local" / JOURNAL_FILE).exists()  # a stale copy would overwrite it
    elsewhere = tmp_path / "other-driver" / JOURNAL_FILE  # a resume on a driver without the file
    restored = searcher(path, carry_journal=True)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.relocate(str(elsewhere))
    assert restored.study.trials[0].value == pytest.approx(0.8) and elsewhere.is_file()
    on_disk = ExperimentStore(str(tmp_path / "runs"), "exp")
    assert journal_path(on_disk) == (str(tmp_path / "runs" / "exp" / JOURNAL_FILE), False)


def test_a_searcher_state_from_before_the_journal_still_restores(tmp_path):
    # What kgsearch saved before the journal: the in-memory study itself and Optuna Trial objects.
    s = searcher(None)
    s.suggest("a")
    s.on_trial_result("a", result(1, 0.4))
    old = {k: v for k, v in s.__dict__.items() if k not in ("_study", "sampler", "direction", "journal",
                                                            "study_name", "carry_journal")}
    old["study"] = s.study
    old["trials"] = {"a": optuna.Trial(s.study, s.trials["a"])}
    with open(tmp_path / "old.pkl", "wb") as f:
        pickle.dump(old, f)
    legacy = OptunaSearcher.__new__(OptunaSearcher)
    legacy.__setstate__(old)  # tuner.pkl of an older experiment
    legacy.restore(str(tmp_path / "old.pkl"))
    legacy.on_trial_complete("a", result=result(4, 0.6))
    (t,) = legacy.study.trials
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.6)
    assert legacy.journal is None and pickle.loads(pickle.dumps(legacy)).study.trials[0].value == pytest.approx(0.6)


def test_make_search_alg_stores_the_study_in_the_journal(tmp_path):
    from kgsearch.sweep.validate import parse_spec

    spec = parse_spec("model: dans\ndataset: umls\nstart_from: null\nscheduler: {max_t: 3}\n"
                      "space:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n", name="mine")
    alg = make_search_alg(spec, journal=str(tmp_path / JOURNAL_FILE), study_name="mine")
    alg.searcher.suggest("t1")
    study = load_study(tmp_path / JOURNAL_FILE)
    assert study.study_name == "mine" and len(study.trials) == 1


# ------------------------------------------------------------------------------------------------
# Reading a stored study: start_from an earlier experiment, importances


def old_experiment(tmp_path, values: list[tuple[float, float, str]]):
    """An experiment folder with a journal of COMPLETE trials (lr, gamma, scorer) -> value, plus a pruned one."""
    exp = tmp_path / "old_exp"
    space = {"lr": LogUniformParam(type="loguniform", low=1e-4, high=1e-1),
             "gamma": UniformParam(type="uniform", low=4, high=16),
             "scorer": ChoiceParam(type="choice", values=["a", "b"])}
    s = searcher(exp / JOURNAL_FILE, space=space)
    for i, (lr, gamma, value) in enumerate(values):
        s.queued.append({"lr": lr, "gamma": gamma, "scorer": "a" if i % 2 else "b"})
        finish(s, f"t{i}", [value / 2, value, value, value])
    s.queued.append({"lr": 0.05, "gamma": 5.0, "scorer": "a"})
    s.suggest("p")
    s.on_trial_complete("p", result=result(1, 0.99))  # pruned at epoch 1 with a high early value
    (exp / "sweep.yaml").write_text("format: 3\nspec: {model: dans}\n")
    return exp


def test_start_from_an_experiment_folder_is_its_best_complete_trial(tmp_path):
    from kgsearch.sweep.validate import parse_spec

    exp = old_experiment(tmp_path, [(0.001, 8.0, 0.5), (0.004, 12.0, 0.9), (0.02, 6.0, 0.7)])
    assert best_complete_trial(exp / JOURNAL_FILE).params["lr"] == pytest.approx(0.004)  # not the pruned 0.99
    assert find_journal(exp) == find_journal(exp / JOURNAL_FILE) == (exp / JOURNAL_FILE).resolve()
    text = ("model: dans\ndataset: umls\nscheduler: {max_t: 3}\nstart_from: %s\nspace:\n"
            "  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n  dim: {type: choice, values: [32, 64]}\n")
    for where in (exp, exp / JOURNAL_FILE):
        spec = parse_spec(text % where, name="new")
        assert spec.start_from == str((exp / JOURNAL_FILE).resolve())
        # lr from the old best; gamma (not searched now) left out; dim (not searched before) sampled
        assert spec.start_values == {"lr": pytest.approx(0.004)}
    alg = make_search_alg(spec, journal=str(tmp_path / "new" / JOURNAL_FILE))
    first = alg.searcher.suggest("t1")  # the new sweep's first trial
    assert first["lr"] == spec.start_values["lr"] and first["dim"] in (32, 64)

    from kgsearch.sweep.warmstart import differences

    assert differences(spec) == {}  # no run file to compare the fixed values with
    narrow = text.replace("low: 1.0e-3, high: 1.0e-2", "low: 1.0e-2, high: 1.0e-1")
    with pytest.raises(KGSearchError, match=r"lr = 0\.004.*best trial \(#1.*outside the space"):
        parse_spec(narrow % exp, name="new")
    with pytest.raises(KGSearchError, match="sweep of model 'kge'"):
        (exp / "sweep.yaml").write_text("format: 3\nspec: {model: kge}\n")
        parse_spec(text % exp, name="new")


def test_start_from_a_study_without_a_finished_trial_is_refused(tmp_path):
    from kgsearch.sweep.validate import parse_spec

    s = searcher(tmp_path / "empty" / JOURNAL_FILE)
    s.suggest("a")
    with pytest.raises(KGSearchError, match="no finished \\(COMPLETE\\) trial"):
        parse_spec(f"model: dans\ndataset: umls\nstart_from: {tmp_path / 'empty'}\nspace:\n"
                   "  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n", name="new")


def test_importances_name_the_parameter_that_decides_the_value(tmp_path):
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(16):  # the value follows lr; gamma is noise
        lr = 10 ** rng.uniform(-4, -1)
        rows.append((lr, rng.uniform(4, 16), 0.5 + 0.1 * (4 + math.log10(lr))))
    exp = old_experiment(tmp_path, rows)
    found = importances(exp / JOURNAL_FILE)
    assert set(found) == {"lr", "gamma", "scorer"} and max(found, key=found.get) == "lr"
    assert sum(found.values()) == pytest.approx(1.0)
    at_first = importances(exp / JOURNAL_FILE, step=1)  # pruned trial included, by its epoch-1 value
    assert max(at_first, key=at_first.get) == "lr"
    lines = importance_lines(exp / JOURNAL_FILE)
    assert lines[0].startswith("parameter importances (COMPLETE") and lines[1].split()[0] == "lr"


def test_importances_fall_back_to_the_first_rung_when_asha_pruned_most_trials(tmp_path):
    s = searcher(tmp_path / JOURNAL_FILE)
    finish(s, "a", [0.1, 0.2, 0.3, 0.4])
    for i in range(4):
        s.suggest(f"p{i}")
        s.on_trial_complete(f"p{i}", result=result(1, 0.1 * i))
    assert importances(tmp_path / JOURNAL_FILE) == {}  # one COMPLETE trial
    assert importance_lines(tmp_path / JOURNAL_FILE)[0].startswith("parameter importances (all trials at epoch 1")


# ------------------------------------------------------------------------------------------------
# --resume --num-samples


def test_resume_num_samples_grows_and_never_shrinks():
    from kgsearch.sweep.restore import grown_samples

    stored = {"format": 3, "spec": {"num_samples": 4}}
    assert grown_samples(stored, None, False) == (4, 4)
    assert grown_samples(stored, 6, False) == (4, 6)  # --resume auto: a total
    assert grown_samples(stored, 2, True) == (4, 6)  # --resume: two more
    with pytest.raises(KGSearchError, match="already has num_samples 4 and can only grow"):
        grown_samples(stored, 3, False)
    with pytest.raises(KGSearchError, match="older kgsearch"):
        grown_samples({"format": 2, "spec": {"num_samples": 4}}, 6, False)


def test_num_samples_plus_n_needs_resume(capsys):
    from kgsearch.sweep.cli import main

    for extra in ([], ["--resume", "auto"]):
        with pytest.raises(SystemExit) as exc:
            main(["dans_umls", "--num-samples", "+3", *extra])
        assert exc.value.code == 2 and "adds trials to a sweep being resumed" in capsys.readouterr().err


def test_resume_num_samples_adds_and_resume_auto_sets_the_total():
    from kgsearch.sweep.cli import parse_args

    added = parse_args(["dans_umls", "--resume", "--num-samples", "4"])
    assert (added.num_samples, added.add_samples) == (4, True)
    total = parse_args(["dans_umls", "--resume", "auto", "--num-samples", "30"])
    assert (total.num_samples, total.add_samples) == (30, False)  # a retried job must not add again
    new = parse_args(["dans_umls", "--num-samples", "30"])
    assert (new.num_samples, new.add_samples) == (30, False)


def test_resume_with_fewer_samples_exits_2_in_one_line(capsys, tmp_path):
    from kgsearch.sweep.cli import main

    exp = tmp_path / "dans_umls"
    exp.mkdir()
    spec = make_spec_record()
    (exp / "sweep.yaml").write_text(spec)
    (exp / "t001_abc").mkdir()  # a started sweep ...
    for name in ("tuner.pkl", "experiment_state-1.json", "search_gen_state-1.pkl", "searcher-state-1.pkl"):
        data = b'{"trial_data": []}' if name.endswith(".json") else pickle.dumps({})
        (exp / name).write_bytes(data)  # ... whose Tune state is whole
    with pytest.raises(SystemExit) as exc:
        main(["dans_umls", "--storage", str(tmp_path), "--resume", "auto", "--num-samples", "1"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "can only grow" in err


def make_spec_record() -> str:
    import yaml

    from kgsearch.sweep.validate import load_spec

    spec = load_spec("dans_umls", smoke=True, num_samples=4)
    return yaml.safe_dump({"format": 3, "spec": spec.model_dump(mode="json"), "data_root": None})
