"""`python -m imapvm` runs the same CLI as the `imapvm` console script."""

from imapvm.cli import main

raise SystemExit(main())
