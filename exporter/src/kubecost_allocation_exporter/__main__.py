"""`python -m kubecost_allocation_exporter`."""

from kubecost_allocation_exporter.cli import main

raise SystemExit(main())
