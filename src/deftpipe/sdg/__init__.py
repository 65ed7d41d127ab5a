"""Synthetic defect generation (SDG): paint routed defect labels onto PASS training pairs.

Public API: `run_sdg` (generate + stage files), its pieces `generate_sdg` / `write_sdg`,
`SdgConfig` / `SdgResult`, and the generator registry. Importing this package
registers the built-in CPU generators lazily on first registry use.
"""
from __future__ import annotations

from deftpipe.sdg._sampling import SdgSample, component_kind
from deftpipe.sdg.allocation import allocate
from deftpipe.sdg.engine import (
    ALLOCATION_JSON,
    NAME,
    RESULT_CSV,
    SdgBatch,
    SdgConfig,
    SdgResult,
    generate_sdg,
    run_sdg,
    write_sdg,
)
from deftpipe.sdg.heavy import BaseHeavyGenerator
from deftpipe.sdg.registry import (
    BaseGenerator,
    GeneratorUnfit,
    generators_for,
    generic_generators,
    get_generator,
    register_generator,
    registered_generators,
    supported_labels,
    supports,
    unregister_generator,
)

__all__ = [
    "ALLOCATION_JSON", "NAME", "RESULT_CSV", "BaseGenerator", "BaseHeavyGenerator", "GeneratorUnfit", "SdgBatch",
    "SdgConfig", "SdgResult", "SdgSample", "allocate", "component_kind", "generate_sdg", "generators_for", "generic_generators",
    "get_generator", "register_generator", "registered_generators", "run_sdg", "supported_labels", "supports",
    "unregister_generator", "write_sdg",
]
