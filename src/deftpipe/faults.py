"""Named fault-injection points: `DEFTPIPE_FAULT=<site>:<n>` hard-kills this process at the n-th hit of <site>.

The kill is SIGKILL to self, so no `finally`, `atexit` or signal handler runs — the
same as a power cut or the OOM killer. Chaos checks (`bench/chaos.py`,
`tests/integration/test_chaos.py`) use it to prove that a run resumes from any of
these instants. With the variable unset, `fault_point` costs one environment lookup.

Example:
    DEFTPIPE_FAULT=state_commit:2 deftpipe run ...   # dies inside the 2nd state commit
"""
from __future__ import annotations

import difflib
import os
import signal
import threading

from deftpipe.errors import ConfigError

ENV = "DEFTPIPE_FAULT"

# site -> where it fires (each placed where a kill hurts most)
SITES: dict[str, str] = {
    "state_commit": "StateStore.commit: new snapshot fsynced as a temp file, not yet renamed over deft_state.json",
    "checkpoint_save": "save_checkpoint: checkpoint fsynced as a temp file, not yet renamed into place",
    "csv_merge": "data_merge: train_combined_<iter>.csv in place, its provenance CSV not yet written",
    "report_render": "render_report: report HTML fsynced as a temp file, not yet renamed into place",
    "trial_end": "AutoML trial: outcome stored in the study, trial not yet told complete",
}

_lock = threading.Lock()
_hits: dict[str, int] = {}
_parsed: tuple[str, tuple[str, int]] | None = None  # (raw env value, (site, n))


def armed() -> tuple[str, int] | None:
    """(site, n) from `DEFTPIPE_FAULT`, or None when unset.

    Raises:
        ConfigError: a malformed value or an unknown site (the closest known one is suggested).
    """
    global _parsed
    raw = os.environ.get(ENV)
    if not raw:
        return None
    if _parsed is not None and _parsed[0] == raw:
        return _parsed[1]
    site, _, count = raw.partition(":")
    if site not in SITES:
        near = difflib.get_close_matches(site, SITES, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"{ENV}={raw!r}: unknown fault site '{site}'; known: {sorted(SITES)}.{tip}",
                          hint=f"Use {ENV}=<site>:<n> to die at the n-th hit of <site>, or unset it.")
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"{ENV}={raw!r}: expected <site>:<n> with n >= 1 (e.g. {site}:1), got n={count!r}.",
                          hint=f"Unset {ENV} for a normal run.")
    _parsed = (raw, (site, int(count)))
    return _parsed[1]


def fault_point(site: str) -> None:
    """Die here (SIGKILL, no cleanup) when `DEFTPIPE_FAULT` names `site` and this is its n-th hit."""
    if ENV not in os.environ:
        return
    target = armed()
    if target is None or target[0] != site:
        return
    with _lock:
        _hits[site] = _hits.get(site, 0) + 1
        if _hits[site] != target[1]:
            return
    os.write(2, f"\ndeftpipe: {ENV}: killed at {site} hit {target[1]} ({SITES[site]})\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
