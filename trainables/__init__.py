"""Per-trial Ray loops, one module per model family (`trainables.<recipe name>`).

Each module binds its recipe to the trial engine in `kgsearch.sweep.trial` and exposes
`train_driver_fn(config, context)` (the Tune function trial) and `train_fn_per_worker(config)`
(a Ray Train worker). The sweep finds the module by the recipe's name; nothing in `kgsearch`
imports this package.
"""
