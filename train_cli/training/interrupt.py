"""Ctrl-C / SIGTERM / SIGUSR1: finish the current batch, then stop cleanly; a second Ctrl-C quits
at once. SIGUSR1 is what a Slurm task gets ahead of its time limit (the sweep's
`--signal=B:USR1@120`), so a run that gets it can tell that from a preemption (SIGTERM).

Everything a run writes is atomic, so quitting at any instant (second Ctrl-C, SIGKILL) leaves the
previous checkpoint readable.
"""
import signal
import sys

TIME_LIMIT = signal.SIGUSR1  # what the sweep's Slurm tasks get ahead of their time limit
# 128 + signal number, as shells report: 130, 143, 138
EXIT_CODES = {s: 128 + s for s in (signal.SIGINT, signal.SIGTERM, TIME_LIMIT)}


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM/SIGUSR1 into a flag polled at batch
    boundaries."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        if self.signum is None:  # after a stop request, a second Ctrl-C must still quit at once
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        self.signum = self.signum or signum
        # The next Ctrl-C takes the operating system's default action: the process ends at
        # once, even while the main thread waits inside MXNet (where a Python handler would
        # have to wait for the batch to finish).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping at the next batch or "
                         "epoch boundary (Ctrl-C again to quit at once; the last checkpoint is "
                         "intact)\n")
        sys.stderr.flush()

    def is_set(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_code(self):
        return EXIT_CODES.get(self.signum, 130)
