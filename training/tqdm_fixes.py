"""A progress bar that a Ctrl-C can interrupt while it is being made (tqdm 4.70).

A KeyboardInterrupt inside `tqdm.__init__` after it has set `disable` but before `pos` leaves a
half-made bar; when it is collected, `tqdm.__del__` calls `close`, which reads `pos`, and Python
prints "Exception ignored in: <function tqdm.__del__ ...> ... AttributeError: 'tqdm' object has no
attribute 'pos'" with its traceback under the interrupted command's one-line message. An epoch's bar
is made at every epoch, so a Ctrl-C can land there (`make train` on a short epoch showed it). The
same family upstream: tqdm/tqdm#323, #1166, #1668 (`close` assumes a fully made bar).

`Bar` is tqdm whose `close` leaves a half-made bar alone. tests/test_tqdm_fixes.py reproduces the
error on plain tqdm; when that test fails because tqdm no longer raises, this module can go.
"""
from __future__ import annotations

from tqdm import tqdm


class Bar(tqdm):
    def close(self) -> None:
        if hasattr(self, "pos"):  # set in __init__ after `disable`, the only attribute close checks first
            super().close()
