import sys

from kgsearch.sweep.cli import main

sys.exit(main())
