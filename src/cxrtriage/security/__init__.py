"""Who may see what: the service's security machinery (the audit trail of :mod:`cxrtriage.security.audit`).

Base modules only, no web layer: the CLI, the service and the DICOM node can all use it.
"""
