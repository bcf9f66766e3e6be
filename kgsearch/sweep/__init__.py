"""The sweep: Ray Tune + Optuna over one search-space file (`python -m kgsearch.sweep NAME`).

Modules, each one job, in the order data flows through them:

    spec        the sweep-file types (pydantic): what a file says, what a sweep runs with
    validate    file -> validated SweepSpec, checked against the facts the recipe declares
    space       the search space for Optuna, and the check that it yields only valid configs
    plan        --dry-run (the resolved sweep and its cost) and --list, without starting anything
    trackers    the optional MLflow / W&B callbacks, and whether their packages are there
    restore     the experiment folder before Ray starts: start, resume, or why neither; Tune's saved state
    ray_env     join a cluster or start a local Ray, size trials to it
    searcher    Optuna behind the concurrency limit, and the trials a resume runs again
    tuner       searcher, scheduler, trainable and run settings -> a Tuner
    rungs       scheduler grash's rung plan: configurations, subgraph share and epochs per rung
    grash       the GraSH search: rung 0 is the search Tuner, later rungs Tuners over the promoted configs
    checkpoints when a trial writes a checkpoint, what is kept, which one is its best
    trial       the trial engine every trainables/<model>.py binds its recipe to
    faults      fault injection (a fit() hook) for the failure-handling tests
    progress    what a running sweep prints (Tune callbacks)
    results     Tune's results -> one row per trial, the best one, trials.csv
    retrain     the top-k configurations re-trained at full length with seeds; best/ = the best mean
    export      a checkpoint tested and written to best/ (the chosen seed run, or the best trial)
    report      the summary table, and where a finished sweep's time went
    storage     the experiment folder (local, shared or a bucket)
    stop        SIGTERM as a graceful stop
    run         one sweep end to end
    cli         the command line

Importing this package imports none of them (nor Ray): `kgsearch.sweep.validate` stays light.
"""
