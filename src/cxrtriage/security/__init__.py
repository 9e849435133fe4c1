"""Who may see what, and who saw it: roles and principals (:mod:`~cxrtriage.security.principal`), API keys for machines
(:mod:`~cxrtriage.security.keys`), OIDC/JWT bearer tokens for people (:mod:`~cxrtriage.security.tokens`), the web UI's
sign-in sessions (:mod:`~cxrtriage.security.sessions`), the one authenticator the web service asks
(:mod:`~cxrtriage.security.authenticate`: which of the two a credential is, whether authentication is configured at all,
the rate limit of failed attempts), and the tamper-evident audit trail (:mod:`~cxrtriage.security.audit`).

Standard library, PyJWT and itsdangerous only: no web framework here, so the CLI (``cxrtriage keys ...``, ``cxrtriage
audit ...``), the DICOM node and any later caller use the same rules as ``serve/auth.py``, which turns them into FastAPI
dependencies."""
