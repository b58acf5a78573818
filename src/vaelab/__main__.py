"""`python -m vaelab` is the `vaelab` command."""

from vaelab.cli import main

raise SystemExit(main())
