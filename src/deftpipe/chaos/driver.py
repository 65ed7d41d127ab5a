"""Start, hard-kill and resume the real `deftpipe` CLI (argv lists, own process group) for chaos checks.

A kill is a named fault point (`DEFTPIPE_FAULT=<site>:<n>`: the process SIGKILLs itself at that
instant) or a SIGKILL to the whole process group after a delay. After every kill all JSON in the
run must still parse and the state must be valid; `deftpipe run --resume` must then carry on. The
finished run is compared with an uninterrupted reference (`digest.compare_digests`).

    fresh run ──kill──► resume ──kill──► … resume ──► complete ──► digest == reference digest?
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deftpipe.chaos.digest import check_interrupted, compare_digests, digest_run
from deftpipe.faults import ENV, SITES

# Each site twice, in the order the QUICK pipeline reaches them, so that every kill lands:
# a Phase 1 trial end and checkpoint, the baseline pre-seed commit, the first report, the merge
# (twice: the restarted stage is killed again), iter1 training, a later commit, a Phase 3 trial end,
# the final report. checkpoint_save never comes first: the pre-flight timing run saves checkpoints too.
BENCH_FAULTS: tuple[str, ...] = (
    "trial_end:1", "checkpoint_save:2", "state_commit:1", "report_render:1", "csv_merge:1",
    "csv_merge:1", "checkpoint_save:1", "state_commit:2", "trial_end:1", "report_render:1",
)
EXIT_REGRESSION = 5
ATTEMPT_TIMEOUT_S = 3600.0
# The comparison is exact, so every process (reference and interrupted) runs with one math thread.
# With two threads on a loaded 2-core machine, one *uninterrupted* run's AutoML trial drifted by
# ~1e-6 relative from an identical run (OpenMP / MKL thread teams), and a tiny-demo model turns such
# a drift into different mined rows and FAR values. Kills and resumes do not need the pin: a killed
# trial retried from scratch reproduced its weights exactly. Override by setting these variables.
PINNED_ENV: dict[str, str] = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ChaosError(RuntimeError):
    """The harness itself could not proceed (a command failed outside any planned kill)."""


@dataclass(frozen=True)
class Kill:
    """One planned kill: a fault point `<site>:<n>`, or a SIGKILL `delay_s` seconds after the start."""

    fault: str | None = None
    delay_s: float | None = None

    def __str__(self) -> str:
        return f"fault {self.fault}" if self.fault else f"SIGKILL after {self.delay_s:.1f}s"


@dataclass(frozen=True)
class Attempt:
    """One process start: what it ran, how it ended (`rc` -9 = killed), and where its output is."""

    argv: tuple[str, ...]
    kill: Kill | None
    rc: int
    seconds: float
    log_path: Path

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL

    def tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class ChaosReport:
    planned: int
    delivered: int = 0
    resumed: int = 0  # delivered kills after which the next start carried on without an error
    results_dir: Path | None = None
    attempts: list[Attempt] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def survived(self) -> int:
        """Kills survived: resumed cleanly and the finished run equals the reference."""
        return self.resumed if self.failure is None and not self.differences else 0

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.differences and self.survived == self.planned

    def summary(self) -> str:
        verdict = "identical to the reference" if self.failure is None and not self.differences else "NOT OK"
        return (f"kills survived: {self.survived}/{self.planned} ({self.delivered} delivered, "
                f"{len(self.attempts)} process starts; finished run {verdict})")


def cli_argv() -> list[str]:
    """The installed CLI, run by this interpreter (`python -m deftpipe` = the `deftpipe` script)."""
    return [sys.executable, "-m", "deftpipe"]


def quick_run_argv(workspace: Path, *, seed: int = 0, extra: Sequence[str] = ()) -> list[str]:
    """`make demo QUICK=1`'s run command (SPEC §7) on `workspace`."""
    return [*cli_argv(), "run", "--workspace", str(workspace), "--max-iterations", "1", "--recommendations", "2",
            "--epochs", "2", "--noise-rerun", "off", "--seed", str(seed), "--yes", *extra]


def make_demo_data(workspace: Path, *, scale: str, seed: int, log_dir: Path) -> None:
    att = _attempt([*cli_argv(), "make-demo-data", str(workspace), "--scale", scale, "--seed", str(seed), "--force"],
                   None, log_dir / f"make_demo_data_{workspace.name}.log")
    if att.rc != 0:
        raise ChaosError(f"make-demo-data exited {att.rc}:\n{att.tail()}")


def plan_kills(n_kills: int, *, rng: random.Random, faults: Sequence[str] = BENCH_FAULTS,
               min_delay_s: float = 3.0, max_delay_s: float = 25.0) -> list[Kill]:
    """`faults` in order (as many as `n_kills` allows), the rest random SIGKILLs placed between them.

    The first kill is always a fault point, so the fresh run dies after approval and the run folder exists;
    random kills never come last, where the run might finish before the delay.
    """
    if n_kills < 1:
        raise ValueError("n_kills must be >= 1")
    for f in faults:
        site, _, n = f.partition(":")
        if site not in SITES or not n.isdigit():
            raise ValueError(f"fault '{f}' is not <site>:<n> with a site of {sorted(SITES)}")
    if not faults:
        raise ValueError("at least one fault point is needed to kill the fresh run")
    plan = [Kill(fault=f) for f in faults[:n_kills]]
    for _ in range(n_kills - len(plan)):
        at = rng.randint(1, max(1, len(plan) - 1))
        plan.insert(at, Kill(delay_s=round(rng.uniform(min_delay_s, max_delay_s), 1)))
    return plan


def _attempt(argv: Sequence[str], kill: Kill | None, log_path: Path, *,
             timeout_s: float = ATTEMPT_TIMEOUT_S) -> Attempt:
    env = {**PINNED_ENV, **{k: v for k, v in os.environ.items() if k != ENV}}
    env.setdefault("DEFTPIPE_LOG_DIR", str(log_path.parent / "crash_logs"))
    if kill is not None and kill.fault:
        env[ENV] = kill.fault
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        wait_s = kill.delay_s if kill is not None and kill.delay_s is not None else timeout_s
        try:
            rc = proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            rc = proc.wait()
            if kill is None or kill.delay_s is None:
                raise ChaosError(f"{' '.join(argv)} ran past {timeout_s:.0f}s; killed (log: {log_path})") from None
        _kill_group(proc.pid)  # a fault kills only the main process; helpers it started die with it here
    return Attempt(tuple(argv), kill, rc, round(time.monotonic() - start, 1), log_path)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _run_dir(workspace: Path) -> Path | None:
    runs = sorted((workspace / "results").glob("run_*"))
    if len(runs) > 1:
        raise ChaosError(f"{workspace}/results holds {len(runs)} runs; the chaos check expects one: {runs}")
    return runs[0] if runs else None


def _resume_argv(rd: Path, *, accept: bool) -> list[str]:
    return [*cli_argv(), "run", "--resume", str(rd), *(["--accept-regression"] if accept else [])]


def run_reference(workspace: Path, run_argv: Sequence[str], *, log_dir: Path) -> Path:
    """The uninterrupted run; a regression halt is accepted once, as `make demo` does."""
    att = _attempt(run_argv, None, log_dir / "reference.log")
    rd = _run_dir(workspace)
    if att.rc == EXIT_REGRESSION and rd is not None:
        att = _attempt(_resume_argv(rd, accept=True), None, log_dir / "reference_accept.log")
    if att.rc != 0 or rd is None:
        raise ChaosError(f"reference run exited {att.rc}:\n{att.tail()}")
    return rd


def run_chaos(workspace: Path, run_argv: Sequence[str], plan: Sequence[Kill], *, reference: Path, log_dir: Path,
              emit: Callable[[str], None] = print) -> ChaosReport:
    """Run `run_argv` on `workspace` through every kill of `plan`, finish it, and compare with `reference`."""
    report = ChaosReport(planned=len(plan))
    accept = False
    pending: Kill | None = None  # a delivered kill whose resume is not yet judged
    steps: list[Kill | None] = [*plan, None]
    i = 0
    while i < len(steps):
        kill = steps[i]
        rd = report.results_dir
        argv = run_argv if rd is None else _resume_argv(rd, accept=accept)
        att = _attempt(argv, kill, log_dir / f"attempt_{len(report.attempts) + 1:02d}.log")
        report.attempts.append(att)
        report.results_dir = rd = _run_dir(workspace)
        clean_exit = att.killed or att.rc in (0, EXIT_REGRESSION)
        if pending is not None and clean_exit:
            report.resumed += 1
        pending = None
        emit(f"  start {len(report.attempts):2d} ({kill or 'no kill'}): "
            f"{'killed' if att.killed else f'exit {att.rc}'} after {att.seconds:.1f}s")
        if not clean_exit:
            report.failure = f"start {len(report.attempts)} ({kill or 'no kill'}) exited {att.rc}:\n{att.tail()}"
            return report
        if att.killed:
            report.delivered += 1
            problems = check_interrupted(rd) if rd is not None else []
            if problems:
                report.failure = f"after {kill}: " + "; ".join(problems)
                return report
            pending = kill
            i += 1
            continue
        if att.rc == EXIT_REGRESSION:
            accept = True
            continue  # the same planned kill again, on the accepting resume
        if kill is not None:
            emit(f"  the run finished before {kill} landed; {len(steps) - 1 - i} planned kill(s) not delivered")
        break
    if report.results_dir is None:
        report.failure = "no run directory was created"
        return report
    report.differences = compare_digests(digest_run(reference), digest_run(report.results_dir))
    return report
