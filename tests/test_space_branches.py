"""Space entries that set another config field than their key (`param:`): one field searched over different
ranges in different branches of a choice (`lr_rotate` / `lr_complex` -> `lr`). The searcher suggests by key
and Tune's trial config gets fields only; validation refuses entries that could set one field together; the
warm start, a resume's reruns, trials.csv and best/config.yaml map between the two."""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from kgsearch.config import config_from_dict, field_names
from kgsearch.dans.recipe import DansConfig
from kgsearch.errors import KGSearchError
from kgsearch.sweep.searcher import make_search_alg
from kgsearch.sweep.space import optuna_space, searched_values, to_config
from kgsearch.sweep.spec import LogUniformParam
from kgsearch.sweep.validate import load_spec, parse_spec

FIELDS = set(field_names(DansConfig))

BRANCHES = textwrap.dedent("""\
    model: dans
    dataset: umls
    scheduler: {max_t: 6}
    start_from: null
    fixed:
      seed: 0
      batch_size: 512
    space:
      scorer:     {type: choice, values: [rotate, complex_n3]}
      lr_rotate:  {type: loguniform, low: 1.0e-3, high: 2.0e-2, param: lr, when: {scorer: rotate}}
      gamma:      {type: uniform, low: 4.0, high: 16.0, when: {scorer: rotate}}
      lr_complex: {type: loguniform, low: 0.03, high: 0.3, param: lr, when: {scorer: complex_n3}}
      optimizer_complex: {type: choice, values: [adagrad], param: optimizer, when: {scorer: complex_n3}}
      batch_size_complex: {type: choice, values: [1000], param: batch_size, when: {scorer: complex_n3}}
      n3_weight:  {type: loguniform, low: 1.0e-3, high: 0.1, when: {scorer: complex_n3}}
      dim:        {type: choice, values: [16, 32]}
    smoke:
      fixed: {lr: 0.01}
    """)


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def error_of(text: str) -> str:
    with pytest.raises(KGSearchError) as info:
        parse_spec(text, source="branches.yaml", name="branches")
    return str(info.value)


# ------------------------------------------------------------------------------------------------
# Sampling


def test_a_branch_space_yields_config_fields_of_the_active_branch_only():
    spec = parse_spec(BRANCHES.replace("start_from: null", "start_from: null\nsearcher: {type: random, seed: 0}"),
                      source="branches.yaml", name="branches")
    searcher = make_search_alg(spec).searcher.searcher  # SweepSearchGenerator -> ConcurrencyLimiter -> Optuna's
    seen = set()
    for i in range(40):
        params = searcher.suggest(f"t{i}")  # what Tune's trial config gets on top of `fixed`
        assert set(params) <= FIELDS, set(params) - FIELDS  # never an alias key like lr_rotate
        config = config_from_dict(DansConfig, {**spec.fixed, **params}, source="trial")
        config.validate()
        if params["scorer"] == "rotate":
            assert set(params) == {"scorer", "lr", "gamma", "dim"}  # no ComplEx-N3 value leaks in
            assert 1e-3 <= config.lr <= 2e-2 and config.optimizer == "adam" and config.n3_weight == 0.0
            assert config.batch_size == 512  # the fixed default where no active entry sets it
        else:
            assert set(params) == {"scorer", "lr", "optimizer", "batch_size", "n3_weight", "dim"}
            assert 0.03 <= config.lr <= 0.3 and config.optimizer == "adagrad" and config.batch_size == 1000
            assert 1e-3 <= config.n3_weight <= 0.1
        seen.add(params["scorer"])
        # Optuna holds the keys; they read back from the trial's config
        trial = searcher.study.trials[-1]
        assert searcher.space.searched({**spec.fixed, **params}) == trial.params
        assert ("lr_rotate" in trial.params) == (params["scorer"] == "rotate") != ("lr_complex" in trial.params)
    assert seen == {"rotate", "complex_n3"}  # both branches are reachable


def test_the_space_maps_keys_to_fields_and_back():
    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches")
    values = {"scorer": "complex_n3", "lr_complex": 0.1, "optimizer_complex": "adagrad", "batch_size_complex": 1000,
              "n3_weight": 0.01, "dim": 32}
    config = to_config(spec.space, values)
    assert config == {"scorer": "complex_n3", "lr": 0.1, "optimizer": "adagrad", "batch_size": 1000,
                      "n3_weight": 0.01, "dim": 32}
    # a full config (fixed default batch_size 512 included) reads back as the active branch's keys only
    assert searched_values(spec.space, {**spec.fixed, **config, "gamma": 9.0}) == values
    rotate = {**spec.fixed, "scorer": "rotate", "lr": 0.002, "gamma": 9.0, "dim": 16, "optimizer": "adam",
              "n3_weight": 0.0}
    assert searched_values(spec.space, rotate) == {"scorer": "rotate", "lr_rotate": 0.002, "gamma": 9.0, "dim": 16}
    backwards = dict(reversed(spec.space.items()))  # children before their parent: the same values
    assert searched_values(backwards, rotate) == searched_values(spec.space, rotate)


def test_the_report_reads_a_trials_config_back_as_keys_from_the_stored_space():
    from kgsearch.sweep.report import _searched_of
    from kgsearch.yamlio import plain, yaml_text

    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches")
    stored = yaml.safe_load(yaml_text(plain(spec.model_dump())))["space"]  # as sweep.yaml holds it
    config = {**spec.fixed, "scorer": "rotate", "lr": 0.002, "gamma": 9.0, "dim": 16, "optimizer": "adam"}
    assert _searched_of(stored)(config) == {"scorer": "rotate", "lr_rotate": 0.002, "gamma": 9.0, "dim": 16}


def test_an_entry_pickled_before_param_existed_sets_its_key():
    p = LogUniformParam(type="loguniform", low=1e-3, high=1e-2)
    old = p.model_copy()
    old.__dict__.pop("param")  # what a searcher state saved by an older kgsearch unpickles to
    assert old.field("lr") == "lr" and optuna_space({"lr": old}).config({"lr": 0.005}) == {"lr": 0.005}


def test_a_pin_takes_every_entry_that_sets_the_field_out():
    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches", smoke=True)
    assert "lr_rotate" not in spec.space and "lr_complex" not in spec.space and spec.fixed["lr"] == 0.01
    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches", sets=["fixed.dim=8"])
    assert "dim" not in spec.space and spec.fixed["dim"] == 8


def test_a_when_on_a_pinned_aliased_choice_is_decided_by_the_pinned_value():
    text = BRANCHES.replace("scorer:     {type: choice, values: [rotate, complex_n3]}",
                            "base:       {type: choice, values: [rotate, complex_n3], param: scorer}") \
                   .replace("when: {scorer:", "when: {base:").replace("fixed: {lr: 0.01}", "fixed: {scorer: complex_n3}")
    spec = parse_spec(text, source="branches.yaml", name="branches")
    assert spec.space["lr_rotate"].when == {"base": ["rotate"]}
    pinned = parse_spec(text, source="branches.yaml", name="branches", smoke=True)
    assert "base" not in pinned.space and "lr_rotate" not in pinned.space and "gamma" not in pinned.space
    assert pinned.space["lr_complex"].when == {} and pinned.fixed["scorer"] == "complex_n3"


# ------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("old,new,key,first", [
    # overlapping values of the same choice
    ("param: lr, when: {scorer: complex_n3}}", "param: lr, when: {scorer: [complex_n3, rotate]}}", "lr_complex",
     "lr_rotate"),
    # one of the two has no `when`
    ("param: lr, when: {scorer: complex_n3}}", "param: lr}", "lr_complex", "lr_rotate"),
    # conditions on different parameters: they may hold together
    ("param: lr, when: {scorer: complex_n3}}", "param: lr, when: {dim: 32}}", "lr_complex", "lr_rotate"),
    # an entry keyed by the field itself, and an alias of it
    ("  dim:        {type: choice, values: [16, 32]}",
     "  dim:        {type: choice, values: [16, 32]}\n  lr: {type: loguniform, low: 1.0e-4, high: 1.0e-3}", "lr",
     "lr_rotate"),
])
def test_entries_that_could_set_one_field_together_are_refused_naming_both(old, new, key, first):
    text = BRANCHES.replace(old, new)
    assert text != BRANCHES
    message = error_of(text)
    assert len(message.splitlines()) == 1, message
    m = re.match(r"branches\.yaml:(?P<line>\d+): space\.(?P<key>\w+): (?P<reason>.+)", message)
    assert m and m["key"] == key, message
    assert f"{first!r} and {key!r} both set 'lr'" in m["reason"] and "can hold together" in m["reason"]
    assert "same choice parameter with no value in common" in m["reason"]
    assert text.splitlines()[int(m["line"]) - 1].lstrip().startswith(f"{key}:")


def test_an_unknown_param_is_refused_at_its_line():
    text = BRANCHES.replace("param: lr, when: {scorer: complex_n3}", "param: lrr, when: {scorer: complex_n3}")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "lrr" in ln)
    message = error_of(text)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"branches.yaml:{line}: space.lr_complex.param: 'lrr' is not a parameter of this "
                              "model's config (did you mean 'lr'?)")


def test_a_key_that_is_no_field_and_has_no_param_says_how_to_name_the_field():
    message = error_of(BRANCHES.replace("param: lr, when: {scorer: complex_n3}", "when: {scorer: complex_n3}"))
    assert "space.lr_complex: 'lr_complex' is not a parameter of this model's config" in message
    assert "names that field with `param:`" in message


def test_a_key_that_is_a_field_cannot_set_another_one():
    message = error_of(BRANCHES.replace("n3_weight:  {type: loguniform, low: 1.0e-3, high: 0.1,",
                                        "n3_weight:  {type: loguniform, low: 1.0e-3, high: 0.1, param: init_scale,"))
    assert "space.n3_weight.param: the key 'n3_weight' is a config field itself, so it cannot set 'init_scale'" \
        in message


def test_a_bad_param_exits_2_through_the_cli(tmp_path, capsys):
    from kgsearch.sweep.cli import main

    path = write(tmp_path, BRANCHES.replace("param: lr, when: {scorer: complex_n3}", "param: lrr, when: {scorer: complex_n3}"))
    with pytest.raises(SystemExit) as info:
        main([str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "space.lr_complex.param: 'lrr' is not a parameter" in err


def test_fixed_is_the_default_of_a_conditional_entry_but_not_beside_an_unconditional_one():
    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches")  # batch_size fixed + batch_size_complex
    assert spec.fixed["batch_size"] == 512 and spec.space["batch_size_complex"].param == "batch_size"
    message = error_of(BRANCHES.replace("  dim:        {type: choice, values: [16, 32]}",
                                        "  dim:        {type: choice, values: [16, 32]}\n"
                                        "  batch: {type: choice, values: [256, 1024], param: batch_size}"))
    assert "space.batch: 'batch' sets 'batch_size', which is also set in `fixed`" in message
    message = error_of(BRANCHES.replace("  seed: 0\n", "  seed: 0\n  dim: 16\n"))
    assert "space.dim: 'dim' is also set in `fixed`; a parameter is either fixed or searched" in message


def test_a_when_on_a_field_that_fixed_and_an_entry_both_set_is_refused():
    message = error_of(BRANCHES.replace("n3_weight:  {type: loguniform, low: 1.0e-3, high: 0.1, when: {scorer: complex_n3}}",
                                        "n3_weight:  {type: loguniform, low: 1.0e-3, high: 0.1, when: {batch_size: 1000}}"))
    assert "space.n3_weight.when.batch_size: 'batch_size' is in `fixed` and also set by space entry " \
           "'batch_size_complex' in some trials" in message


def test_a_range_check_names_the_field_an_alias_sets():
    message = error_of(BRANCHES.replace("dim:        {type: choice, values: [16, 32]}",
                                        "width:      {type: uniform, low: 16, high: 32, param: dim}"))
    assert "space.width.type: 'width' (field 'dim') is an integer parameter; use type: int" in message


# ------------------------------------------------------------------------------------------------
# Warm start


RUN_ROTATE = "model: dans\ndataset: umls\nparams: {scorer: rotate, lr: 0.004, gamma: 9.0, dim: 32, epochs: 6}\n"
RUN_COMPLEX = ("model: dans\ndataset: umls\nparams: {scorer: complex_n3, optimizer: adagrad, lr: 0.1, batch_size: 1000, "
               "n3_weight: 0.01, dim: 16, epochs: 6}\n")


def warm(tmp_path: Path, run: str) -> Path:
    write(tmp_path / "configs", run, "mine.yaml")
    return write(tmp_path / "search_spaces", BRANCHES.replace("start_from: null\n", ""), "mine.yaml")


@pytest.mark.parametrize("run,wanted", [
    (RUN_ROTATE, {"scorer": "rotate", "lr_rotate": 0.004, "gamma": 9.0, "dim": 32}),
    (RUN_COMPLEX, {"scorer": "complex_n3", "lr_complex": 0.1, "optimizer_complex": "adagrad",
                   "batch_size_complex": 1000, "n3_weight": 0.01, "dim": 16}),
])
def test_the_warm_start_maps_the_run_file_to_the_active_branchs_keys(tmp_path, run, wanted):
    spec = load_spec(warm(tmp_path, run))
    assert spec.start_values == wanted  # a RotatE run file gives lr_rotate, never lr_complex (and vice versa)
    searcher = make_search_alg(spec).searcher.searcher
    first = searcher.suggest("t001")
    assert searcher.study.trials[0].params == wanted  # Optuna's first trial, by key
    given = yaml.safe_load(run)["params"]
    assert {k: first[k] for k in given if k in first} == {k: v for k, v in given.items() if k in first}
    assert set(first) <= FIELDS


def test_a_run_file_value_outside_its_branchs_range_names_the_alias_and_the_field(tmp_path):
    path = warm(tmp_path, RUN_COMPLEX.replace("lr: 0.1", "lr: 0.01"))
    with pytest.raises(KGSearchError) as info:
        load_spec(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert ": space.lr_complex: the first trial's lr_complex (lr) = 0.01 (the run file" in message


def test_the_dry_run_compares_a_fixed_default_that_an_inactive_entry_would_override(tmp_path):
    from kgsearch.sweep.warmstart import differences

    spec = load_spec(warm(tmp_path, RUN_ROTATE))
    assert differences(spec) == {}  # batch_size 512 is the run file's (its default): no difference
    spec = load_spec(warm(tmp_path, RUN_ROTATE.replace("dim: 32", "dim: 32, batch_size: 256")))
    assert differences(spec)["batch_size"] == (512, 256)  # the rotate branch trains with fixed's 512


# ------------------------------------------------------------------------------------------------
# A resume's reruns: a failure record holds the trial's config fields


def test_a_reruns_config_fields_are_queued_as_the_spaces_keys(tmp_path):
    from kgsearch.sweep.searcher import SweepSearchGenerator, on_restore

    spec = parse_spec(BRANCHES, source="branches.yaml", name="branches")
    alg = make_search_alg(spec)
    alg.save_to_dir(str(tmp_path), "default")  # Tune's search_gen_state, as a running sweep saves it
    failed = {"scorer": "complex_n3", "lr": 0.2, "optimizer": "adagrad", "batch_size": 1000, "n3_weight": 0.05,
              "dim": 16}  # Tune's evaluated_params of the failed trial
    on_restore(reruns=[failed])
    restored = make_search_alg(spec)
    restored.restore_from_dir(str(tmp_path))
    inner = restored.searcher.searcher
    assert inner.queued == [{"scorer": "complex_n3", "lr_complex": 0.2, "optimizer_complex": "adagrad",
                             "batch_size_complex": 1000, "n3_weight": 0.05, "dim": 16}]
    assert inner.suggest("again") == failed  # the same values run again
    assert SweepSearchGenerator.reruns_on_restore == []


# ------------------------------------------------------------------------------------------------
# End to end on a real (embedded) Ray: trials.csv by key, every config and best/config.yaml by field


E2E = textwrap.dedent("""\
    model: dans
    dataset: umls
    num_samples: 3
    searcher: {type: random, seed: 0}
    scheduler: {type: fifo, max_t: 1}
    retrain: {top_k: 1, seeds: [0, 1]}
    start_from: null
    fixed: {seed: 0, eval_every: 1, dans: false, dim: 8, negatives: 4, batch_size: 256}
    space:
      scorer: {type: choice, values: [rotate, complex_n3]}
      lr_rotate: {type: loguniform, low: 1.0e-3, high: 2.0e-2, param: lr, when: {scorer: rotate}}
      lr_complex: {type: loguniform, low: 0.03, high: 0.3, param: lr, when: {scorer: complex_n3}}
      optimizer_complex: {type: choice, values: [adagrad], param: optimizer, when: {scorer: complex_n3}}
    """)


def test_a_branch_sweep_writes_keys_to_trials_csv_and_fields_to_every_config(ray_session, tmp_path):
    from kgsearch.sweep.report import load_experiment
    from kgsearch.sweep.run import run_sweep

    spec = parse_spec(E2E, source="branches.yaml", name="branches")
    exp = run_sweep(spec, storage=str(tmp_path), say=lambda _: None).experiment
    with (exp / "trials.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    assert {"scorer", "lr_rotate", "lr_complex", "optimizer_complex"} <= set(header) and "lr" not in header
    assert {r["scorer"] for r in rows} == {"rotate", "complex_n3"} and all(r["status"] == "completed" for r in rows)
    for r in rows:
        (folder,) = exp.glob(f"{r['trial']}_*")
        config = json.loads((folder / "params.json").read_text())  # Tune's trial config
        assert not {"lr_rotate", "lr_complex", "optimizer_complex"} & set(config)
        key = "lr_rotate" if r["scorer"] == "rotate" else "lr_complex"
        other = "lr_complex" if key == "lr_rotate" else "lr_rotate"
        assert float(r[key]) == config["lr"] and r[other] == ""
        assert config.get("optimizer", "adam") == ("adam" if r["scorer"] == "rotate" else "adagrad")
    best = yaml.safe_load((exp / "best" / "config.yaml").read_text())["params"]
    assert "lr" in best and not set(best) - FIELDS, set(best) - FIELDS  # real config fields only
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    chosen = next(r for r in rows if r["trial"] == metrics["trial"])
    key = "lr_rotate" if chosen["scorer"] == "rotate" else "lr_complex"
    assert best["lr"] == float(chosen[key]) and best["scorer"] == chosen["scorer"]
    assert metrics["searched"][key] == best["lr"] and "lr" not in metrics["searched"]
    record = json.loads((exp / "retrain" / "candidates.json").read_text())["candidates"][0]
    assert record["config"]["lr"] == best["lr"] and key not in record["config"] and key in record["params"]
    data = load_experiment(exp)  # the report: searched values by key
    curve = next(t for t in data.trials if t.label == chosen["trial"])
    assert curve.params[key] == pytest.approx(best["lr"]) and "lr" not in curve.params
