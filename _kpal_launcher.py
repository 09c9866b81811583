"""Entry point of the ``kpal`` console script: signal handlers first, then the heavy imports.

Importing :mod:`kpal.cli` imports numpy and Pillow, which takes a good part
of a second; a handler installed there would come too late for a Ctrl-C during
start-up. This module lives outside the ``kpal`` package (whose ``__init__``
does those imports), needs only ``os``, ``signal`` and ``sys``, and installs
its handlers when imported: they are in place from the script's first lines.

The rule, whenever SIGINT, SIGTERM or SIGHUP arrives: one line
``kpal: error: interrupted`` (``terminated``, ``hangup``) and exit code
128 + the signal number (130, 143, 129), never a traceback.

- While kpal starts and after it has finished, nothing needs cleaning up: the
  handler prints the line and ends the process at once. (Raising instead
  would be unreliable: an exception raised inside a C extension's import can
  come out as an unrelated ImportError.)
- While a command runs, the signal raises an exception so that
  :func:`kpal.io.write_atomic` removes its temporary file (:mod:`kpal.cliio`
  installs the command's own handlers); the exit code is 128 + the signal
  number even when the output was already renamed into place: the file is
  then complete.
- A signal ignored by the parent (``nohup``, a shell's background jobs)
  stays ignored.

A Ctrl-C before this module is imported, while Python itself starts, is
Python's own (a KeyboardInterrupt traceback); SIGTERM and SIGHUP then end the
process silently, which a shell reports as the same 128 + number.
"""

from __future__ import annotations

import os
import signal
import sys

_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
if hasattr(signal, "SIGHUP"):
    _WORDS[signal.SIGHUP] = "hangup"

#: The first signal that raised during the command, 0 if none.
_received = 0


class _Signalled(BaseException):
    """A signal arrived while kpal ran a command, outside the command's own handlers."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main() -> int:
    """Run the ``kpal`` command line and return its exit code.

    Returns
    -------
    int
        0 on success, 1 or 2 on an error, 128 + the signal number after a
        signal, 141 when the reader of stdout went away.
    """
    global _received
    _received = 0
    _install(_exit_now)  # again: a caller may have changed them since the import
    _reserve_standard_fds()
    from kpal.cli import main as kpal_main

    try:
        _install(_raise)
        code = _run(kpal_main)
        if _received and code != 128 + _received:
            # The signal's exception was swallowed on the way (a library's fallback):
            # the signal still decides how kpal ends.
            raise _Signalled(_received)
    except BaseException as e:
        # An exception that replaced the signal's own (an import failing because
        # of it, say) still ends as the signal.
        signum = _signal_of(e) or _received
        if not signum:
            raise
        _install(_ignore)  # a second signal must not cut the message short
        _say(signum)
        code = 128 + signum
    _install(_exit_now)
    return code


def _run(kpal_main) -> int:
    try:
        kpal_main()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        sys.stderr.write(f"{e.code}\n")
        return 1
    return 0


def _signal_of(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    # _Signalled here, kpal.cliio.Terminated from inside a command.
    signum = getattr(exc, "signum", None)
    return signum if signum in _WORDS else 0


def _exit_now(signum, frame) -> None:
    """Starting or finished: nothing to clean up, so leave at once."""
    _say(signum)
    os._exit(128 + signum)


def _raise(signum, frame) -> None:
    global _received
    _received = _received or signum
    _install(_ignore)
    raise _Signalled(signum)


def _ignore(signum, frame) -> None:
    """A later signal: kpal is already on its way out."""


def _install(handler) -> None:
    for signum in _WORDS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup, background jobs
            signal.signal(signum, handler)


def _say(signum: int) -> None:
    # After ^C click starts a new line; the same line, whenever the signal comes.
    lead = "\n" if signum == signal.SIGINT else ""
    # os.write, not sys.stderr: this may run inside a handler, amid another write.
    try:
        os.write(2, f"{lead}kpal: error: {_WORDS[signum]}\n".encode())
    except OSError:
        pass


def _reserve_standard_fds() -> None:
    # A closed 0, 1 or 2 would be handed to the next file opened: the output file.
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


# At import, not in main(): the console script imports this module on its
# first lines, so from then on a signal is handled.
_install(_exit_now)

if __name__ == "__main__":
    sys.exit(main())
