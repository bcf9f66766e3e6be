"""``python -m kgsearch.data NAME_OR_PATH``: load a dataset and print its counts."""

from kgsearch.data import main

main()
