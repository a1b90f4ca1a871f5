"""``.venv/bin/python -m tests.policy.capture``: capture the request corpus (see run.py)."""

from .run import main

raise SystemExit(main())
