"""Results for the hospital's systems: the output-format registry (``formats``: JSON, FHIR, DICOM SR, Secondary
Capture) and each format's builder (``fhir``, ``sr``, ``secondary_capture``), all built from one ``context`` (the
prediction, the decoded image with its DICOM header, the analysed pixels). They import nothing above the schema and
the imaging types."""
