"""A site profile (``cxrtriage commission``): one hospital's calibration, threshold and review band for the loaded
model, fitted on its own labelled films, applied where the classifier's score is calibrated and its operating point
read (:class:`~cxrtriage.site.backend.SiteBackend`). Run-time code: numpy only; the fitting is offline
(``evaluation/commissioning*``)."""

from cxrtriage.site.backend import SiteBackend, with_site
from cxrtriage.site.profile import SiteProfile, load_profile, site_info

__all__ = ["SiteBackend", "SiteProfile", "load_profile", "site_info", "with_site"]
