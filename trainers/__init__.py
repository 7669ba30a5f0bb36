"""Lightning trainers: LightningModules, data modules, callbacks and the stages of each family.

Importing the package quiets Lightning's start-up chatter on ordinary runs (issue: "output that informs"):
the device lines ("GPU available: False ...") and the LitLogger tip go to INFO, which users opt back into
with ``WM_VERBOSE=1``; the ``_pytree`` LeafSpec deprecation is Lightning's own, not actionable by users.
"""

import logging
import os
import warnings

if not os.environ.get("WM_VERBOSE"):
    for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(_name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
