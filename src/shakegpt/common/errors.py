"""Errors a user can cause, reported as one sentence instead of a traceback."""

from __future__ import annotations

import functools
import os
import signal
import sys


class UserError(Exception):
    """Bad input from the user (config, file, checkpoint, command line): the message says what.
    IPython and Jupyter show it as that one line too, as the command line does."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for an exception's display
        return [f"{type(self).__name__}: {self}"]


def find_user_error(exc: BaseException | None) -> UserError | None:
    """The UserError behind exc, if any; Hydra's instantiate wraps constructor errors."""
    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def one_line(exc: BaseException) -> str:
    """The sentence a user sees for exc: a UserError's own, else its type and first line."""
    user_error = find_user_error(exc)
    if user_error is not None:
        return str(user_error)
    # Hydra's instantiate wraps what a constructor raised in "Error in call to target ...":
    # the cause is what the user needs to read.
    if type(exc).__name__ == "InstantiationException" and exc.__cause__ is not None:
        return one_line(exc.__cause__)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def report_user_errors(main):
    """Print a UserError as `error: <sentence>` and exit 2; HYDRA_FULL_ERROR=1 shows the traceback.
    A closed stdout pipe ends the command quietly."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:  # `python report.py <run> | head`: the reader has what it wanted
            quiet_stdout()
            sys.exit(141)  # 128 + SIGPIPE, as a shell tool killed by the signal
        except Exception as exc:
            user_error = find_user_error(exc)
            if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit raises no second broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def exit_quietly_on_ctrl_c(imports_done: bool = False) -> None:
    """Until the command sets handlers of its own, Ctrl-C ends it with one line and the shell's
    exit code 130, not a traceback. An entry script calls it first, before its imports (torch and
    Lightning take seconds): Ctrl-C then ends the process on the spot, as unwinding a half-done
    import can fail on its own (numpy refuses to load twice). Called again once they are done
    (imports_done), Ctrl-C unwinds as SystemExit, so cleanups (temporary files) run."""
    signal.signal(signal.SIGINT, exit_on_signal if imports_done else exit_at_once)


def exit_on_signal(signum, frame) -> None:
    print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
    sys.exit(128 + signum)


def exit_at_once(signum, frame) -> None:
    print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    os._exit(128 + signum)
