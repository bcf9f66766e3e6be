"""Every shipped sweep file validates (as is and with --smoke) and only ever produces valid configs."""

from __future__ import annotations

import optuna
import pytest

from kgsearch.config import config_from_dict
from kgsearch.recipe import get_recipe
from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.validate import REPO_ROOT, load_spec

SHIPPED = sorted(p.stem for p in (REPO_ROOT / "search_spaces").glob("*.yaml"))
EXPECTED = {"dans_umls", "dans_family", "dans_wn18rr", "dans_fb15k237", "dans_nell995",
            "dkgr_icews14", "dkgr_icews18", "dkgr_icews0515"}
LARGE = {"dans_wn18rr", "dans_fb15k237", "dans_nell995", "dkgr_icews18", "dkgr_icews0515"}
# Each paper's searchable hyperparameters, by config field name (a model without a paper list: none).
PAPER_SEARCHED = {
    "dans": {"diffusion_steps", "beta_init", "beta_low", "beta_global", "mu", "curriculum_lambda",
             "curriculum_zeta", "eta", "margin_increment", "gamma", "lr", "dim"},
    "dkgr": {"history_len", "lambda_entity", "lambda_relation", "lambda_static", "angle_deg", "lr", "dim"},
}


def test_all_sweeps_are_shipped():
    assert EXPECTED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("smoke", [False, True])
def test_sweep_file_validates(name, smoke):
    spec = load_spec(name, smoke=smoke)
    assert spec.name == name
    assert spec.metric == "val_" + get_recipe(spec.model).metric
    assert spec.fixed["epochs"] == spec.scheduler.max_t
    if smoke:
        assert spec.scheduler.max_t <= 2 and spec.num_samples <= 2 and spec.fixed.get("dim", 99) <= 16
    else:
        wanted = PAPER_SEARCHED.get(spec.model, set())
        assert wanted <= set(spec.space), wanted - set(spec.space)
        assert spec.searcher.type == "tpe" and spec.scheduler.type == "asha"
        assert spec.searcher.n_startup_trials < spec.num_samples
    if name in LARGE:
        assert spec.resources.gpus_per_worker >= 1  # sized for a GPU cluster
    if spec.resources.workers > 1:
        assert float(spec.resources.gpus_per_worker).is_integer()


@pytest.mark.parametrize("name", SHIPPED)
def test_sampled_trials_build_valid_configs(name):
    spec = load_spec(name)
    recipe_cls = get_recipe(spec.model)
    space = optuna_space(spec.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    for _ in range(40):
        trial = study.ask()
        space(trial)
        config = config_from_dict(recipe_cls.Config, {**spec.fixed, **trial.params}, source=name)
        assert config.epochs == spec.scheduler.max_t
        study.tell(trial, 0.0)
