"""``python -m domret_pipeline.cli``: the ``domret`` command without the console script."""

import sys

from . import main

sys.exit(main())
