"""Stop at a step boundary on SIGINT, SIGTERM and SLURM's pre-timeout signal, instead of dying mid-step.

    with StopOnSignal() as stop:
        for step in ...:
            update()
            if stop.signum is not None:
                save_checkpoint()
                stop.hand_over()   # submitit's own handler (requeue), if it had one; else raise ``Interrupted``

A second Ctrl-C raises ``KeyboardInterrupt`` at once. Handlers are installed only in the main thread and the
previous ones are restored on exit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | None


def preemption_signal() -> signal.Signals:
    """The signal SLURM sends before a timeout or preemption: submitit's choice (``SUBMITIT_PREEMPT_SIGNAL``, USR2)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
    return getattr(signal.Signals, f"SIG{name}", signal.SIGUSR2)


class StopOnSignal:
    """Notes the first stop signal in ``signum``; the training loop checks it after each step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in {signal.SIGINT, signal.SIGTERM, preemption_signal()}:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without a checkpoint
        self.signum = signum

    def hand_over(self, message: str) -> None:
        """After the checkpoint: run the handler that was there before ours if it is a Python one (submitit's:
        requeue on the preemption signal, ignore SIGTERM), else raise ``Interrupted(message)``."""
        from iql.errors import Interrupted

        signum, self.signum = self.signum, None
        assert signum is not None
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)  # submitit requeues and exits here; its SIGTERM "bypass" returns: go on training
            return
        raise Interrupted(message, signum)
