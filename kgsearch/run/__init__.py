"""Run state shared by single runs (`kgsearch.train`) and sweep trials (`kgsearch.sweep`).

* `loop`: the epoch loop `fit()` with explicit hooks, and the `FitState` it keeps;
* `metrics`: metric names (`val_tf_mrr`) and split evaluation;
* `checkpoint`: the checkpoint format, and checkpoint <-> recipe weights + loop state;
* `runfile`: the run-file type (`{model, dataset, data_root, metric, params}`) and building its recipe.
"""
