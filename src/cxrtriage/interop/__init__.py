"""Results for the hospital's systems: FHIR (``fhir``). Serialisations of a :class:`~cxrtriage.schema.Prediction`;
they import nothing above the schema and the DICOM header reader."""
