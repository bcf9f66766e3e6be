"""Static attribute graph G_s from entity names (paper Sec. 4.2.1).

`Government_(Nigeria)` -> (e, isA, "Government"), (e, country, "Nigeria"); a plain name such as
`France` -> (e, is, "France"). Attribute nodes are *word* nodes shared by all entities naming them, so
"Nigeria" links the entity Nigeria (is) with every `..._(Nigeria)` entity (country).

Name handling (both ICEWS spellings):
* underscores and runs of spaces are one space, so ICEWS14/05-15 (`Citizen_(Nigeria)`) and ICEWS18
  (`Citizen (Nigeria)`) give the same words. RE-GCN's ent2word kept the trailing `_` of the type word
  (`Citizen_`), which stops "Citizen" the type from meeting "Citizen" the plain entity; we drop it.
* the *last* top-level parenthesised group is the country and everything before it the type:
  `Member_of_Legislative_(Govt)_(Nigeria)` -> type "Member of Legislative (Govt)", country "Nigeria"
  (RE-GCN took the first group and made "Govt" a country); nested groups stay inside:
  `Citizen (Holy See (Vatican City State))` -> country "Holy See (Vatican City State)".
* a name whose parentheses are unbalanced (`Zarko_Korac_(acting`), whose last group is not at the end
  (`Awami_(People's)_League`), or whose type/country part would be empty is a plain name.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

IS_A, COUNTRY, IS = 0, 1, 2
RELATION_NAMES = ("isA", "country", "is")
NUM_STATIC_RELATIONS = 3

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACES.sub(" ", text.replace("_", " ")).strip()


def _last_group(name: str) -> tuple[int, int] | None:
    """(open, close) index of the last top-level (...) group, or None if parentheses are unbalanced."""
    depth, start, last = 0, -1, None
    for i, ch in enumerate(name):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                last = (start, i)
    return last if depth == 0 else None


def name_attributes(name: str) -> list[tuple[int, str]]:
    """[(relation type, word)] for one entity name: [(isA, type), (country, c)] or [(is, name)]."""
    clean = normalise(name)
    group = _last_group(clean)
    if group is not None and group[1] == len(clean) - 1:
        kind, country = clean[:group[0]].strip(), clean[group[0] + 1:group[1]].strip()
        if kind and country:
            return [(IS_A, kind), (COUNTRY, country)]
    return [(IS, clean or name)]


def build_static_graph(entity_names: Sequence[str]) -> dict:
    """Edges entity -> word with types {isA, country, is}; word node ids index `words`.

    Returns {"words": [str], "ent": LongTensor[E], "word": LongTensor[E], "rel": LongTensor[E]}.
    Words are numbered in order of first appearance (deterministic across runs).
    """
    word_id: dict[str, int] = {}
    ent, word, rel = [], [], []
    # One pass over names (not facts): string parsing has no vectorised form; it runs once per
    # dataset inside Recipe.prepare and is cached.
    for e, name in enumerate(entity_names):
        for r, w in name_attributes(name):
            ent.append(e)
            word.append(word_id.setdefault(w, len(word_id)))
            rel.append(r)
    return {"words": list(word_id), "ent": torch.tensor(ent, dtype=torch.long),
            "word": torch.tensor(word, dtype=torch.long), "rel": torch.tensor(rel, dtype=torch.long)}
