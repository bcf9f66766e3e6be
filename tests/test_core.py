"""Shared core: typed configs, run files, checkpoints, the CLI error contract."""

import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest
import torch

from kgsearch.config import config_from_dict
from kgsearch.errors import KGSearchError
from kgsearch.recipe import get_recipe
from kgsearch.run.checkpoint import load_checkpoint, save_checkpoint
from kgsearch.run.runfile import RunFile
from kgsearch.yamlio import read_yaml


@dataclass
class Cfg:
    lr: float = 0.1  # learning rate
    dim: int = 8
    scorer: Literal["rotate", "transe"] = "rotate"
    note: Optional[str] = None

    def validate(self):
        if self.dim <= 0:
            raise ValueError("dim must be positive")


def test_config_coerces_yaml_scalars_and_names_unknown_keys():
    cfg = config_from_dict(Cfg, {"lr": 1, "dim": 4.0}, source="x.yaml")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.dim == 4
    with pytest.raises(KGSearchError, match=r"x.yaml: unknown key 'lrr'"):
        config_from_dict(Cfg, {"lrr": 1}, source="x.yaml")
    with pytest.raises(KGSearchError, match=r"key 'dim': input should be a valid integer, got 'big'"):
        config_from_dict(Cfg, {"dim": "big"}, source="x.yaml")
    with pytest.raises(KGSearchError, match=r"key 'scorer': input should be 'rotate' or 'transe'"):
        config_from_dict(Cfg, {"scorer": "complex"}, source="x.yaml")
    with pytest.raises(KGSearchError, match=r"x.yaml: dim must be positive"):
        config_from_dict(Cfg, {"dim": 0}, source="x.yaml")


def test_read_yaml_reports_the_line_of_a_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: dans\nparams:\n  lr: [1, 2\n")
    with pytest.raises(KGSearchError, match=r"bad.yaml:\d+: invalid YAML"):
        read_yaml(bad)
    with pytest.raises(KGSearchError, match="no such file"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(KGSearchError, match="expected a mapping"):
        read_yaml(tmp_path / "list.yaml")


def test_run_file_keys_are_checked(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("model: dans\ndataset: umls\nparms: {}\n")
    with pytest.raises(KGSearchError, match=r"run.yaml:3: parms: unknown key 'parms'"):
        RunFile.load(run)
    run.write_text("dataset: umls\n")
    with pytest.raises(KGSearchError, match="model: required key is missing"):
        RunFile.load(run)
    run.write_text("model: dans\ndataset: umls\nparams:\n  lr: 0.1\n  dimm: 8\n")
    with pytest.raises(KGSearchError, match=r"run.yaml:5: params.dimm: unknown key 'dimm'"):
        RunFile.load(run)
    run.write_text("model: dans\ndataset: umls\nmetric: val_tf_mrr\n")
    with pytest.raises(KGSearchError, match=r"run.yaml:3: metric: unknown metric 'val_tf_mrr' for model 'dans'"):
        RunFile.load(run)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KGSearchError, match=r"unknown model 'nope' \(known: dans, dkgr\)"):
        get_recipe("nope")


def test_checkpoint_round_trip_and_foreign_files_rejected(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model="dans", config={"a": 1}, state={"w": torch.ones(2)}, epoch=3)
    blob = load_checkpoint(path, model="dans")
    assert blob["epoch"] == 3 and torch.equal(blob["state"]["w"], torch.ones(2))
    with pytest.raises(KGSearchError, match="not 'dkgr'"):
        load_checkpoint(path, model="dkgr")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")  # a plain torch file, not ours
    with pytest.raises(KGSearchError, match="other.pt: not a kgsearch checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    # a pickle carrying arbitrary objects is refused by weights_only loading, not executed
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Cfg()))
    with pytest.raises(KGSearchError, match="evil.pt: not a kgsearch checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(KGSearchError, match="text.pt: not a kgsearch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")


def test_train_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("model: nope\ndataset: umls\n")
    proc = subprocess.run([sys.executable, "-m", "kgsearch.train", str(run)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown model 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kgsearch.train", "--eval", str(tmp_path / "x.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such checkpoint" in proc.stderr


def test_train_cli_set_overrides_a_run_file_key_and_names_a_bad_one(tmp_path):
    from kgsearch.overrides import apply_overrides
    from kgsearch.yamlio import read_yaml

    run = tmp_path / "run.yaml"
    run.write_text("model: dans\ndataset: umls\nparams:\n  lr: 0.1\n")
    doc = apply_overrides(read_yaml(run), ["params.lr=0.02", "params.dim=8"])
    assert RunFile.from_dict(doc.data, str(run), doc).params == {"lr": 0.02, "dim": 8}
    proc = subprocess.run([sys.executable, "-m", "kgsearch.train", str(run), "--set", "params.dimm=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--set params.dimm=3: params.dimm: unknown key 'dimm'" in proc.stderr


def _tiny_run(tmp_path) -> Path:
    run = tmp_path / "run.yaml"
    run.write_text("model: dans\ndataset: umls\nparams: {dans: false, dim: 8, negatives: 4, epochs: 1, eval_every: 1}\n")
    return run


def test_resume_refuses_settings_other_than_the_run_trained_with(tmp_path, capsys):
    from kgsearch.train import main

    run, out = _tiny_run(tmp_path), tmp_path / "out"
    assert main([str(run), "--out", str(out), "--threads", "1"]) == 0
    with pytest.raises(SystemExit) as info:
        main([str(run), "--out", str(out), "--resume", "--set", "params.lr=0.5", "--set", "params.epochs=2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "trained with other settings" in err and "lr: 0.001 -> 0.5" in err and "--set params.lr=0.001" in err
    # the same settings (bar the epochs, which a resume may extend) resume
    assert main([str(run), "--out", str(out), "--resume", "--set", "params.epochs=2", "--threads", "1"]) == 0


def test_eval_rebuilds_the_run_with_the_settings_it_trained_with(tmp_path, monkeypatch):
    import kgsearch.train as train_mod
    from kgsearch.run.checkpoint import load_checkpoint, save_checkpoint

    run, out = _tiny_run(tmp_path), tmp_path / "out"
    assert train_mod.main([str(run), "--out", str(out), "--threads", "1"]) == 0
    blob = load_checkpoint(out / "best.pt")
    blob["state"]["params"]["eval_batch_size"] = 7  # as if the code's default had changed since
    save_checkpoint(out / "best.pt", model=blob["model"], config=blob["config"], state=blob["state"],
                    epoch=blob["epoch"], metrics=blob["metrics"])
    seen = []
    build = train_mod.build
    monkeypatch.setattr(train_mod, "build", lambda run, *a, **k: seen.append(run.params) or build(run, *a, **k))
    train_mod.evaluate_checkpoint(str(out / "best.pt"))
    assert seen[0]["eval_batch_size"] == 7
