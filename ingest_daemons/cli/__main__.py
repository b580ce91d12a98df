import sys

from ingest_daemons.cli import main

sys.exit(main())
