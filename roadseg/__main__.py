"""`python -m roadseg ...` is the same as the `roadseg` console script."""

import sys

from roadseg.cli import main

sys.exit(main())
