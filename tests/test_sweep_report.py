"""The sweep's report (figures + report.html, kgsearch.sweep.report / figures) and its progress lines
(kgsearch.sweep.progress), on a synthetic experiment folder: no Ray, no training."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("matplotlib")

from kgsearch.sweep import progress  # noqa: E402
from kgsearch.sweep.figure_axes import clip_to, focus_range  # noqa: E402
from kgsearch.sweep.figures import best_so_far  # noqa: E402
from kgsearch.sweep.progress import (ProgressPrinter, best_changes, estimate_remaining,  # noqa: E402
                                     status_line)
from kgsearch.sweep.report import _main, load_experiment, winners, write_report  # noqa: E402
from kgsearch.sweep.results import TrialRow, trials_csv  # noqa: E402

T0 = 1_800_000_000.0
SPACE = {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
         "gamma": {"type": "uniform", "low": 1.0, "high": 10.0},
         "scorer": {"type": "choice", "values": ["rotate", "transe"]}}
# label -> (status, searched values, validation curve, finish minute); t006 failed before reporting
TRIALS = {
    "t001": ("completed", {"lr": 0.002, "gamma": 9.0, "scorer": "rotate"}, [0.50, 0.62, 0.70, 0.71, 0.69, 0.72], 2),
    "t002": ("completed", {"lr": 0.05, "gamma": 3.0, "scorer": "transe"}, [0.40, 0.55, 0.60, 0.66, 0.68, 0.67], 4),
    "t003": ("completed", {"lr": 0.01, "gamma": 5.5, "scorer": "rotate"}, [0.55, 0.68, 0.74, 0.78, 0.80, 0.81], 6),
    "t004": ("stopped_early", {"lr": 0.09, "gamma": 1.5, "scorer": "transe"}, [0.20, 0.25], 7),
    "t005": ("stopped_early", {"lr": 0.004, "gamma": 7.0, "scorer": "rotate"}, [0.30, 0.41], 8),
    "t006": ("failed", {"lr": 0.02, "gamma": 2.0, "scorer": "transe"}, [], 9),
}
WINNERS = {"trial": "t003", "test_mrr_mean": 0.80, "test_mrr_std": 0.01, "seeds": [0, 1, 2],
           "winners": [{"trial": "t003", "rows": [{"seed": s, "val_mrr": 0.80 + d, "test_mrr": 0.79 + d}
                                                  for s, d in ((0, 0.0), (1, 0.01), (2, -0.005))]},
                       {"trial": "t001",  # nested rows, as best/metrics.json holds val / test
                        "rows": [{"seed": s, "val": {"val_mrr": 0.72 + d}, "test": {"test_mrr": 0.7 + d}}
                                 for s, d in ((0, 0.0), (1, 0.02), (2, -0.01))]}]}


def make_experiment(folder: Path, winners_rows: bool = True) -> Path:
    """An experiment folder laid out as kgsearch.sweep.run writes one (trials.csv through results.trials_csv)."""
    folder.mkdir(parents=True)
    spec = {"name": "synthetic", "model": "dans", "dataset": "umls", "metric": "val_mrr", "mode": "max",
            "space": SPACE, "scheduler": {"type": "asha", "max_t": 6}, "start_from": "/repo/configs/synthetic.yaml"}
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"format": 2, "spec": spec}))
    rows = []
    for i, (label, (status, params, curve, minute)) in enumerate(TRIALS.items()):
        trial_id = f"id{i:06d}"
        best = max(curve) if curve else math.nan
        rows.append(TrialRow(trial=label, trial_id=trial_id, status=status, epochs=len(curve), best=best,
                             best_epoch=curve.index(best) + 1 if curve else 0, params=params, config=params,
                             path=str(folder / f"{label}_{trial_id}"), checkpoint=None, time_s=30.0 * len(curve)))
        if not curve:
            continue
        trial = folder / f"{label}_{trial_id}"
        trial.mkdir()
        end = T0 + 60 * minute
        every = 2 if label == "t002" else 1  # eval_every 2: odd epochs repeat the last validation
        lines = [{"val_mrr": curve[e - e % every - 1], "best_val_mrr": max(curve[:e - e % every]),
                  "val_epoch": float(e - e % every), "epochs_done": e,
                  "loss": 1.0 / e, "epoch_time": 5.0, "eval_time": 1.0, "setup_s": 2.0,
                  "timestamp": int(end - 10 * (len(curve) - e)), "trial_started_at": end - 10 * len(curve) - 5,
                  "config": {**params, "seed": 0}} for e in range(every, len(curve) + 1)]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "trials.csv").write_text(trials_csv(rows, "val_mrr", tuple(SPACE)))
    (folder / "timing.json").write_text(json.dumps({
        "started_at": T0 - 20, "prepared_s": 5.0, "ray_start_s": 10.0, "tune_started_at": T0,
        "tune_finished_at": T0 + 600, "max_concurrent_trials": 2, "finished_at": T0 + 610, "wall_s": 630.0}))
    metrics = {"trial": "t003", "val": {"val_mrr": 0.81}, "test": {"test_mrr": 0.80}, "test_key": "test_mrr"}
    (folder / "best").mkdir()
    (folder / "best" / "metrics.json").write_text(json.dumps({**metrics, **(WINNERS if winners_rows else {})}))
    return folder


def _image_facts(path: Path) -> tuple[int, int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        return image.width, image.height, len(colours or [])


def test_the_report_draws_every_figure_as_a_readable_png(tmp_path):
    exp = make_experiment(tmp_path / "exp")
    write_report(exp, importances={"lr": 0.6, "gamma": 0.3, "scorer": 0.1})
    names = {p.name for p in (exp / "report").glob("*.png")}
    assert names == {"best_so_far.png", "curves.png", "params.png", "slices.png", "seeds.png", "importances.png"}
    for name in names:
        path = exp / "report" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height, colours = _image_facts(path)
        assert 600 <= width <= 2400 and 300 <= height <= 1800, (name, width, height)
        assert colours > 50, f"{name} looks blank ({colours} colours)"


def test_report_html_is_one_file_that_embeds_every_figure(tmp_path):
    exp = make_experiment(tmp_path / "exp")
    page = write_report(exp, importances={"lr": 0.7, "gamma": 0.3}).read_text()
    pngs = sorted((exp / "report").glob("*.png"))
    assert len(pngs) == 6
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode() in page, png.name
    assert "src='report/" not in page and "http" not in page  # nothing to fetch: it can be mailed
    for label in TRIALS:
        assert f"<td>{label}" in page
    assert "t001 (warm start)" in page and "test_mrr 0.8" in page


def test_figures_whose_material_is_missing_are_left_out(tmp_path, monkeypatch):
    import kgsearch.sweep.report as report

    monkeypatch.setattr(report, "study_importances", lambda exp: (None, "no study"))
    exp = make_experiment(tmp_path / "exp", winners_rows=False)
    write_report(exp)
    assert {p.name for p in (exp / "report").glob("*.png")} == {"best_so_far.png", "curves.png", "params.png",
                                                              "slices.png"}


def test_the_experiment_is_read_as_results_py_writes_it(tmp_path):
    data = load_experiment(make_experiment(tmp_path / "exp"), reference=0.75)
    by = {t.label: t for t in data.trials}
    assert list(by) == list(TRIALS) and data.warm_start == "t001" and data.reference == 0.75
    assert by["t003"].best == pytest.approx(0.81) and by["t003"].epochs == [1, 2, 3, 4, 5, 6]
    assert by["t004"].status == "stopped_early" and by["t004"].values == [0.20, 0.25]
    assert by["t006"].status == "failed" and by["t006"].values == [] and by["t006"].params["scorer"] == "transe"
    assert by["t002"].epochs == [2, 4, 6] and by["t002"].values == [0.55, 0.66, 0.67]  # one point per validation
    assert by["t002"].finished_s == pytest.approx(240) and by["t001"].params["lr"] == pytest.approx(0.002)
    assert [name for name, _ in data.winners] == ["t003", "t001"]


def test_winners_read_per_seed_rows_flat_or_nested_and_nothing_without_them():
    found = winners(WINNERS)
    assert [len(rows) for _, rows in found] == [3, 3]
    assert found[1][1][1] == {"seed": 1, "val_mrr": pytest.approx(0.74), "test_mrr": pytest.approx(0.72)}
    single = winners({"trial": "t009", "seeds": [0, 1], "per_seed": [{"seed": 0, "test_mrr": 0.5},
                                                                       {"seed": 1, "test_mrr": 0.6}]})
    assert single == [("t009", [{"seed": 0, "test_mrr": 0.5}, {"seed": 1, "test_mrr": 0.6}])]
    assert winners({"trial": "t003", "seeds": [0, 1, 2], "test": {"test_mrr": 0.8}}) == []


def test_the_cli_prints_the_timing_and_writes_the_report(tmp_path):
    exp = make_experiment(tmp_path / "exp")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _main([str(exp), "--reference", "0.75"]) == 0
    assert "busy_share" in out.getvalue() and f"report: {exp / 'report.html'}" in out.getvalue()
    assert (exp / "report" / "best_so_far.png").exists()


# ------------------------------------------------------------------------------------------------
# Best so far and the status line


def test_figures_zoom_past_a_collapsed_trial_so_the_winners_can_be_told_apart():
    # Family's sweep: winners within 0.01 of each other and one trial collapsed to 0.22
    bests = [0.9759, 0.972, 0.9691, 0.9685, 0.9463, 0.93, 0.90, 0.88, 0.86, 0.2188]
    lo, hi = focus_range(bests, "max")
    assert 0.2188 < lo <= 0.9463 and hi >= 0.9759  # the better half shown, the collapse not
    assert hi - lo < 0.1  # the winners' 0.007 spread takes a visible part of the axis (not 1 % of 0.8)
    ys, out = clip_to(bests, (lo, hi))
    assert out == [v < lo for v in bests] and min(ys) == lo  # the hidden ones drawn on the lower edge
    assert focus_range([0.97, 0.971, 0.969, 0.968], "max") is None  # nothing far out: no zoom
    lo, hi = focus_range([1.0, 1.1, 1.2, 9.0], "min")  # a loss: the far-out value is the large one
    assert lo < 1.0 and 1.2 <= hi < 9.0


def test_best_so_far_changes_only_when_strictly_improved_under_the_mode():
    values = [0.5, 0.4, 0.6, 0.6, math.nan, 0.7, 0.65]
    assert best_changes(values, "max") == [(0, 0.5), (2, 0.6), (5, 0.7)]
    assert best_changes(values, "min") == [(0, 0.5), (1, 0.4)]
    assert best_changes([], "max") == []
    # the figure's steps: the same rule over (time, value), in time order whatever the input order
    assert best_so_far([(3.0, 0.7), (1.0, 0.5), (2.0, 0.4), (4.0, 0.7)], "max") == [(1.0, 0.5), (3.0, 0.7)]
    assert best_so_far([(3.0, 0.7), (1.0, 0.5), (2.0, 0.4)], "min") == [(1.0, 0.5), (2.0, 0.4)]


def _trial(n: int, status: str = "RUNNING", **last):
    return SimpleNamespace(experiment_tag=f"{n}_x", trial_id=f"id{n}", status=status, error_file=None,
                           config={"lr": 0.01 * n, "gamma": 2.0, "seed": 0}, last_result=last)


def _lines(call) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        call()
    return out.getvalue().splitlines()


def test_progress_says_so_once_each_time_the_best_so_far_changes():
    for mode, values, expected in (("max", [0.3, 0.5, 0.4, 0.5, 0.6], [0.3, 0.5, 0.6]),
                                   ("min", [0.3, 0.5, 0.2, 0.2], [0.3, 0.2])):
        printer = ProgressPrinter("val_loss", 10, ("lr", "gamma"), mode=mode)
        said = []
        for i, value in enumerate(values):
            trial = _trial(i + 1)
            result = {"epochs_done": 1, "loss": 1.0, "val_loss": value, "best_val_loss": value}
            said += _lines(lambda: printer.on_trial_result(0, [], trial, result))
        best = [line for line in said if "new best" in line]
        assert [float(line.split("val_loss ")[1].split()[0]) for line in best] == expected, mode
        assert "lr=0.01 gamma=2" in best[0] and "seed" not in best[0]


def test_status_line_estimates_only_after_a_trial_completed():
    before = status_line(0, 20, "val_mrr", None, "", 75, estimate_remaining(20, 0, [], [120.0], 2))
    assert before == "0 of 20 trials, best val_mrr -, elapsed 1:15, estimating remaining time..."
    # 2 done of 10 in 60 s each, 2 at a time, one running for 20 s: (8 * 60 - 20) / 2 = 230 s
    left = estimate_remaining(10, 2, [60.0, 60.0], [20.0], 2)
    assert left == pytest.approx(230)
    after = status_line(2, 10, "val_mrr", 0.8123, "t002", 3725, left)
    assert after == "2 of 10 trials, best val_mrr 0.8123 (t002), elapsed 1:02:05, about 3:50 remaining"
    assert estimate_remaining(10, 2, [60.0, 60.0], [], 2, budget_left_s=100) == 100  # a time budget caps it
    assert estimate_remaining(10, 9, [60.0], [], 4) == pytest.approx(60)  # one left: one slot's worth


def test_the_printer_shows_the_status_at_each_trial_end_and_every_minute_in_between(monkeypatch):
    printer = ProgressPrinter("val_mrr", 4, ("lr",), concurrency=2)
    printer.setup(num_samples=4, total_num_samples=4)
    running = [_trial(1), _trial(2)]
    for t in running:
        _lines(lambda t=t: printer.on_trial_start(0, running, t))
    assert _lines(lambda: printer.on_step_end(0, running)) == []  # not yet a minute
    monkeypatch.setattr(printer, "last_status", printer.last_status - progress.STATUS_EVERY_S - 1)
    periodic = _lines(lambda: printer.on_step_end(0, running))
    assert len(periodic) == 1 and "0 of 4 trials" in periodic[0] and "estimating" in periodic[0]
    done = _trial(1, "TERMINATED", epochs_done=4, best_val_mrr=0.7)
    lines = _lines(lambda: printer.on_trial_complete(0, [done, running[1]], done))
    assert "t001 done" in lines[0] and "1 of 4 trials" in lines[1] and "remaining" in lines[1]
    assert "estimating" not in lines[1]


def test_the_end_of_sweep_report_never_fails_the_sweep(tmp_path):
    from kgsearch.sweep.report import report_line

    exp = make_experiment(tmp_path / "exp")
    assert f"{exp / 'report.html'}" in report_line(exp) and (exp / "report.html").exists()
    (tmp_path / "broken").mkdir()  # no sweep.yaml
    line = report_line(tmp_path / "broken")
    assert "not written (FileNotFoundError" in line and "python -m kgsearch.sweep.report" in line


def test_importances_come_from_the_experiments_optuna_journal(tmp_path):
    """The hook into kgsearch.sweep.study: a journal in the folder gives the importances chart."""
    study_module = pytest.importorskip("kgsearch.sweep.study")
    if not hasattr(study_module, "find_journal"):
        pytest.skip("kgsearch.sweep.study has no journal yet")
    import optuna

    from kgsearch.sweep.report import study_importances

    exp = make_experiment(tmp_path / "exp")
    assert study_importances(exp) == (None, "")  # no journal: no chart, nothing to say
    study = study_module.open_study(exp / study_module.JOURNAL_FILE, "exp", optuna.samplers.RandomSampler(seed=0),
                                    "maximize")
    study.optimize(lambda t: -abs(t.suggest_float("lr", 1e-3, 1e-1, log=True) - 0.01)
                   + 0.001 * t.suggest_float("gamma", 1.0, 10.0), n_trials=12)
    found, note = study_importances(exp)
    assert set(found) == {"lr", "gamma"} and note == ""
    write_report(exp)
    assert (exp / "report" / "importances.png").exists()
