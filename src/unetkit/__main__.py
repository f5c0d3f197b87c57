"""`python -m unetkit` (also what torchrun launches)."""

from unetkit.cli.main import main

raise SystemExit(main())
