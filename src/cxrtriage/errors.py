"""Typed errors: every unreadable, unsupported or unsafe input maps to one of these.

Callers (CLI, REST, UI) turn them into exit codes / HTTP 4xx with the message as is,
so messages must be understandable by a user and must never contain patient identifiers.
"""

from __future__ import annotations


class CXRTriageError(Exception):
    """Base class for all errors raised on purpose by cxrtriage."""


class InputError(CXRTriageError):
    """The input given by the user cannot be triaged (client error, HTTP 4xx)."""


class InvalidImageError(InputError):
    """The file is empty, truncated, corrupt, or has no usable pixel data."""


class UnsupportedFormatError(InputError):
    """The file is not PNG, JPEG or DICOM, or uses a feature we do not support."""


class ImageTooLargeError(InvalidImageError):
    """The image exceeds the configured pixel limit (decompression-bomb guard)."""


class NotAChestXrayError(InputError):
    """The image is not recognisably a frontal chest radiograph."""


class ModelError(CXRTriageError):
    """The model or its metadata is missing, corrupt or inconsistent (server-side problem)."""


class ConfigurationError(CXRTriageError, ValueError):
    """A setting (a ``CXRTRIAGE_*`` variable, or the option that overrides it) has a value that cannot be used; the
    message names the variable. Entry points report it and exit (the CLI with code 2)."""


class ServiceBusyError(CXRTriageError):
    """Every inference slot and every queue place is taken: retry later (HTTP 429; the UI says so)."""
