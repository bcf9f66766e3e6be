"""kgsearch: hyperparameter search for knowledge-graph reasoning on Ray Tune + Optuna."""

__version__ = "0.2.0"


def __getattr__(name):
    # Lazy submodule access (`kgsearch.data.load(...)`) without importing torch at package import.
    import importlib

    if name in {"data", "evaluation", "recipe", "run", "sweep", "train"}:
        return importlib.import_module(f"kgsearch.{name}")
    raise AttributeError(f"module 'kgsearch' has no attribute {name!r}")
