"""DKGR-DR: dynamic KG reasoning with R-GCN + GRU evolution and a static attribute graph.

history.py (snapshot tables), rgcn.py (Eq. 3), static_graph.py (G_s from names), rgat.py (Eq. 8-10),
decoders.py (ConvTransE / ConvE / FC), model.py (Eq. 4-7, 11-17), recipe.py (the kgsearch Recipe).
"""
