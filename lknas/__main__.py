"""Entry point for `python -m lknas`."""
import sys

from lknas.cli import main

sys.exit(main())
