"""The exception types for things a user can cause and fix.

The CLI turns them into a message on stderr and an exit code; anything else that escapes is a bug
and keeps its traceback.
"""

EXIT_FAILURE = 1  # the run could not be done (data, files, divergence)
EXIT_USAGE = 2  # the command line or config file is wrong (click's convention)


def last_line(error):
    """What an exception says, in one line: MXNet's messages carry a C++ traceback, whose last
    line is the one that says what failed."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("MXNetError: ") if lines else type(error).__name__


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    prefix = "Error: "

    def __init__(self, message, exit_code=EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(UserError):
    """A wrong option or config value (exit code 2)."""

    def __init__(self, message):
        super().__init__(message, EXIT_USAGE)


class Stopped(UserError):
    """The run was stopped on request (Ctrl-C, SIGTERM, SIGUSR1); the message says how to resume."""

    prefix = ""  # not an error
