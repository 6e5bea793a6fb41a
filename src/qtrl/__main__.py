"""``python -m qtrl`` (also what ``torchrun -m qtrl`` runs)."""

import sys

from .cli import main

sys.exit(main())
