"""DANS-KGC: diffusion-based adaptive negative sampling for static knowledge-graph completion.

Modules: `difficulty` (DAM, Eq. 1), `diffusion` (DFS / CCD / reverse chain, Eq. 2–13), `margins`
(DTM, Eq. 14–18), `graph` (neighbour / type conditions), `pretrain` (e_sem), `model` (the whole
loss in one forward), `recipe` (config + Recipe).
"""

from __future__ import annotations

from kgsearch.dans.recipe import DansConfig, DansRecipe

__all__ = ["DansConfig", "DansRecipe"]
