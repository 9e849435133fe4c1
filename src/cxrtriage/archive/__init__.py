"""``cxrtriage batch``: a whole archive of chest films through the one pipeline on Ray Data, resumable, into Parquet.

The driver lists the sources (:mod:`sources`) and streams the inputs to a pool of actors (:mod:`worker`), each of
which loads the model once, reads and decodes its images itself and writes its results as atomic Parquet part files
(:mod:`rows`, :mod:`storage`); the driver only counts what comes back (:mod:`progress`), then summarises the whole
output (:mod:`summary`). :mod:`resume` knows which inputs a killed run already finished; :mod:`run` ties it together;
:mod:`bench` measures images per second against the sequential ``cxrtriage predict``. Ray is imported only here and
only when a run starts (:func:`cxrtriage.optional.require`): the service and the inference path never load it.
"""
