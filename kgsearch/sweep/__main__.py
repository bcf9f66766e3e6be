import sys

from kgsearch.allocator import restart_with_allocator_env

restart_with_allocator_env()  # before the heavy imports below, so they are not done twice

from kgsearch.sweep.cli import main  # noqa: E402

sys.exit(main())
