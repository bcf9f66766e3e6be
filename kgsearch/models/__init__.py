"""Base knowledge-graph-embedding scorers shared by the recipes."""

from __future__ import annotations

from kgsearch.models.kge import SCORERS, ComplEx, DistMult, KGEModel, RotatE, TransE, build_scorer

__all__ = ["SCORERS", "ComplEx", "DistMult", "KGEModel", "RotatE", "TransE", "build_scorer"]
