"""The bearer token of ``wm serve`` and its clients (``wm serve-load``, ``wm play``): where it comes from, and which
tokens an HTTP header can carry."""

from __future__ import annotations

import os

TOKEN_ENV = "WM_SERVE_TOKEN"


def token_from(flag: str) -> str:
    """The bearer token: ``--token``, else ``$WM_SERVE_TOKEN``, else none; ValueError for one a header cannot carry.

    Shared by ``wm serve`` and this client: HTTP headers are latin-1, so a non-ASCII token could never be sent
    by a UTF-8 client; whitespace and control characters would be split or stripped on the way.
    """
    token, source = (flag, "--token") if flag else (os.environ.get(TOKEN_ENV, ""), f"${TOKEN_ENV}")
    for i, char in enumerate(token):
        if not 33 <= ord(char) <= 126:  # the character itself is not shown: it is part of a secret
            why = ("whitespace" if char.isspace() else "a non-ASCII character" if ord(char) > 127
                   else "a control character")
            raise ValueError(f"{source} must be printable ASCII without whitespace (letters, digits, punctuation), "
                             f"but has {why} at position {i}; e.g. python -c 'import secrets; "
                             f"print(secrets.token_urlsafe(32))'")
    return token
