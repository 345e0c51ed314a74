"""`python -m bench`: every measurement `make bench` makes (see bench/__init__.py)."""
import sys

from .runtime_step import main

sys.exit(main())
