"""cxrtriage as a node in a hospital's DICOM network: a Storage SCP that triages each chest radiograph it receives
(:mod:`cxrtriage.pacs.node`), a poller that pulls new instances from an Orthanc PACS over its REST API
(:mod:`cxrtriage.pacs.orthanc`), and the one path both share from a received instance to the results they send
back (:mod:`cxrtriage.pacs.instance`, :mod:`cxrtriage.pacs.delivery`). Needs the ``[interop]`` extra."""
