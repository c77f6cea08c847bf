"""`python -m srv` is the same as `./objs/srs` and the `srs` console script."""

from srv.cli import main

raise SystemExit(main())
