"""``python -m chainaudit``: the same as the ``chainaudit`` command."""

import sys

from chainaudit.cli import main

sys.exit(main())
