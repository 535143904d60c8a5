"""Who a per-customer limit counts: the token subject, and the mailbox the order is sent to.

A guest gets a fresh subject from every ``POST /v1/auth/guest``, so a limit counted by subject alone is
one use per guest token, which is no limit. What a guest can't mint as freely is a mailbox that takes
the order's mail, so uses are counted by mailbox as well. The mailbox is kept as a key: spellings that
reach one mailbox share it (case, a ``+tag``, Gmail's dots and googlemail.com), and it is a SHA-256 of
that form, so promotion stores no email address and no event carries one.
"""

from __future__ import annotations

import hashlib

__all__ = ["email_key"]

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
# Versioned, so a change of the normal form can't silently match old keys to other mailboxes.
_KEY_PREFIX = b"kassa-promotion-mailbox-v1:"


def _mailbox(email: str) -> str | None:
    local, at, domain = email.strip().lower().rpartition("@")
    domain = domain.rstrip(".")
    if not at or not local or not domain:
        return None
    local = local.split("+", 1)[0]
    if domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else None


def email_key(email: str) -> str | None:
    """The key of the mailbox ``email`` reaches, or None when it names none (an empty email)."""
    mailbox = _mailbox(email)
    if mailbox is None:
        return None
    return hashlib.sha256(_KEY_PREFIX + mailbox.encode()).hexdigest()
