"""`python -m ingest.cli`: the `crm-ingest` command, for processes started without the
installed script (the tests, the benchmarks)."""

import sys

from ingest.cli import main

sys.exit(main())
