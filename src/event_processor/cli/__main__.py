"""`python -m event_processor.cli ...`: how the harness and tests start subcommands."""

import sys

from event_processor.cli import main

sys.exit(main())
