"""``python -m tickwire.bench``: the side-by-side benchmark."""

from __future__ import annotations

from . import main

raise SystemExit(main())
