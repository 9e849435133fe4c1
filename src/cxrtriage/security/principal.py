"""The three roles and who holds one (:class:`Principal`).

The rule, written once (:meth:`Role.allows`): the roles are ordered ``submitter < reader < admin`` and a role may do
everything the roles below it may. Why an order rather than disjoint sets: a reader uses the web UI, whose Triage tab
sends images for triage, so a reader already submits; an admin (keys, configuration, metrics) is trusted with the
results too. The other way round is what matters for safety: a submitter key (a modality gateway's, a script's)
reads nothing that is stored, so a leaked gateway key exposes no worklist, no stored result and no crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["ANONYMOUS", "Principal", "Role"]


class Role(str, Enum):
    """``submitter`` (send images for triage), ``reader`` (worklist, stored results, crops, the UI), ``admin``
    (keys, configuration, metrics, status). A ``str`` enum (``enum.StrEnum`` needs Python 3.11; the package
    supports 3.10): ``Role.READER == "reader"`` and ``str(Role.READER) == "reader"``."""

    SUBMITTER = "submitter"
    READER = "reader"
    ADMIN = "admin"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def allows(self, required: Role) -> bool:
        """True when this role may do what ``required`` may (the one rule: submitter < reader < admin)."""
        return self.rank >= required.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value``; ValueError with the known names otherwise."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError(f"unknown role {value!r}: use one of {', '.join(r.value for r in cls)}") from None


_ORDER = (Role.SUBMITTER, Role.READER, Role.ADMIN)


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``name`` (an API key's name, or the token's subject / preferred user name), the ``role``
    it acts with, and ``via`` how it was authenticated: ``api-key``, ``oidc``, ``session`` (signed in to the web UI:
    :mod:`cxrtriage.security.sessions`) or ``open`` (authentication is not configured and the service runs open on
    loopback, or with ``--insecure-no-auth``)."""

    name: str
    role: Role
    via: str


#: the principal of every request while no authentication is configured (the service runs open)
ANONYMOUS = Principal(name="anonymous", role=Role.ADMIN, via="open")
