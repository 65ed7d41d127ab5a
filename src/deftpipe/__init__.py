"""deftpipe: AutoML -> DEFT data-improvement loop -> warm-started AutoML for AOI change-detection classifiers."""
from __future__ import annotations

from deftpipe.api import rerun, run_automl, run_deft, run_pipeline

__version__ = "0.1.0"
__all__ = ["__version__", "rerun", "run_automl", "run_deft", "run_pipeline"]
