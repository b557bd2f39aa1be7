"""The ``verify`` stage's kernel: each row's answer judged against its gold answer (in worker processes with
a CPU-time budget per item when run locally). It lives with ``verify_frame`` in :mod:`curate.verify.frame`
because the difficulty stage's probe and ``curate eval`` judge answers with the same code."""

from ...verify.frame import VerifyKernel, check_columns

__all__ = ["VerifyKernel", "check_columns"]
