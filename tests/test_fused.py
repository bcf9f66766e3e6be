"""The compiled evaluation path gives the same distances as the eager one."""

import pytest
import torch

from kgsearch.models import fused
from kgsearch.models.kge import RotatE


def test_fused_rotate_scores_match_eager(monkeypatch):
    torch.manual_seed(0)
    model = RotatE(300, 5, 16)
    anchor, rel = torch.randint(0, 300, (33,)), torch.randint(0, 10, (33,))
    with torch.no_grad():
        monkeypatch.setenv("KGSEARCH_COMPILE", "0")
        eager = model.score_all(anchor, rel)
        monkeypatch.setenv("KGSEARCH_COMPILE", "1")
        monkeypatch.setattr(fused, "MIN_ELEMENTS", 0)
        assert fused.fused_match_all(RotatE.match, model.query(anchor, rel), model.entity) is not None
        compiled = model.score_all(anchor, rel)
    assert compiled == pytest.approx(eager, abs=1e-4)
