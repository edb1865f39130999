"""`python -m synchronizer` does what the `bkcmdb-synchronizer` command does."""

import sys

from .cli import main

sys.exit(main())
