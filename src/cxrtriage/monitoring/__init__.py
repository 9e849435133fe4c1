"""Drift monitoring: watch what the service and the DICOM node see, without keeping images.

Every result and every refusal becomes one small **monitor record** (:mod:`cxrtriage.monitoring.record`: score,
label, review flag, gate outcome, the highest similarity to a training case, four image statistics, the site
profile in use; no identifier, path or file name), appended to an owner-only JSONL file in the service's state
folder (:mod:`cxrtriage.monitoring.store`, safe across worker processes, size-capped). :mod:`cxrtriage.monitoring.drift`
compares a recent window with a reference (a site profile's commissioning sample, else the first results of use)
and turns each figure that moved past its limit into a sentence a person can act on; :mod:`cxrtriage.monitoring.report`
renders the same figures as text, JSON and HTML with plots over time (``cxrtriage monitor``, the UI's Monitoring
tab; the service's ``/metrics`` exposes them as gauges).
"""
