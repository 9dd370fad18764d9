"""``python -m fedmrn_pl``: the ``fedmrn-pl`` command (as torchrun launches it: ``torchrun -m fedmrn_pl``)."""

import sys

from fedmrn_pl.cli import main

sys.exit(main())
