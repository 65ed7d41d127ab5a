"""deftpipe: AutoML -> DEFT data-improvement loop -> warm-started AutoML for AOI change-detection classifiers."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
