"""`python -m porch.cli ...`: the `porch` command without its console script."""

import sys

from porch.cli.main import main

sys.exit(main())
