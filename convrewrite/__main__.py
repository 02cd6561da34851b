"""`python -m convrewrite ...`: the same command line as `python cli.py`."""
import sys

from cli import main

sys.exit(main())
