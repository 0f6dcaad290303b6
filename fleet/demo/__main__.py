"""`python -m fleet.demo`: see `fleet.demo.run`."""

from __future__ import annotations

import sys

from fleet.demo.run import main

sys.exit(main())
