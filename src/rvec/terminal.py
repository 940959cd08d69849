"""Text that came from a file or an argument, made safe to print on a terminal.

A tensor name, a path, a study or model name is data written by whoever made the file. Printed
raw, its control characters are commands to the terminal: ``ESC [ 2 J`` clears the screen,
``ESC ] 0 ; … BEL`` retitles the window, ``CR`` and colour codes fake a line of rvec's own output.
Everything rvec prints about such a name goes through :func:`plain` (the CLI's ``shown`` adds rich
markup escaping on top; :class:`rvec.progress.ProgressBar` and the CLI's log lines use it too).
"""

from __future__ import annotations

import re

__all__ = ["plain"]

# C0 and C1 control characters and DEL (C1 includes CSI, U+009B, which some terminals obey alone).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """``value`` as text safe to print on a terminal: control characters escaped (``\\x1b``).

    Example:
        >>> plain("a\\x1b[2Jb")
        'a\\\\x1b[2Jb'
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
