"""Progress inside a long step: periodic plain lines off a terminal, a bar on one, silent by default."""

from __future__ import annotations

import io
import subprocess
import sys

from kgsearch import progress as progress_mod
from kgsearch.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_off_a_terminal_a_plain_line_every_period_with_rate_and_time_left(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", clock)
    out = io.StringIO()
    bar = Progress("epoch 3", 10, stream=out, every_s=30.0)
    for _ in range(4):
        clock.now += 10.0
        bar.advance()
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["epoch 3: 3/10 ( 30%) 0.1/s, 0:30 elapsed, 1:10 left"]  # at 30 s, not before, not twice


def test_on_a_terminal_one_line_that_overwrites_itself(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", clock)
    out = Tty()
    bar = Progress("valid", 4, stream=out)
    for _ in range(4):
        clock.now += 1.0
        bar.advance()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and "[####################] 4/4 (100%)" in text


def test_recipes_are_silent_unless_a_cli_asks(tiny_static_dir, capfd):
    from kgsearch.dans.recipe import DansConfig, DansRecipe
    from kgsearch.data import load

    data = load(tiny_static_dir)
    config = DansConfig(dans=False, dim=4, epochs=1, negatives=2, batch_size=2)
    recipe = DansRecipe(config, data, DansRecipe.prepare(config, data))
    recipe.train_epoch(1)
    recipe.evaluate("valid")
    assert capfd.readouterr().err == ""
    seen = []
    recipe.progress = lambda what, total: seen.append((what, total)) or progress_mod._Silent()
    recipe.train_epoch(2)
    recipe.evaluate("valid")
    assert seen == [("epoch 2", 6), ("valid evaluation", 1)]  # 12 queries / batch 2; 4 queries in one chunk


def test_train_cli_shows_progress_in_a_log(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("model: dans\ndataset: umls\nparams: {dans: false, dim: 8, epochs: 1, batch_size: 64}\n")
    code = ("import kgsearch.progress as p, sys; p.Progress.__init__.__defaults__ = (None, 0.0);"
            "from kgsearch.train import main; main([sys.argv[1]])")
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1: " in proc.stderr and "left" in proc.stderr and "valid evaluation: " in proc.stderr
