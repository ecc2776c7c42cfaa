"""``python -m albgate.cli``: the same command as the ``albgate`` console script.

Job: run ``albgate.cli.main`` on the process's arguments.
Invariant: the process exits with ``main``'s return code.
"""

import sys

from albgate.cli import main

sys.exit(main())
