"""Entry point of a worker process alone: `python -m worker` is `crm-ingest worker` (the
runtime, its broker and actors are built by `ingest`; see ingest/pipeline.py).
"""

from __future__ import annotations

import sys

from ingest.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
