"""Stage 1, the input: read PNG/JPEG/DICOM into grey pixels, preprocess them for a model, and the input gate (is
this a frontal chest radiograph?)."""
