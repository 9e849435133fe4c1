"""The command line (`cxrtriage ...`), batch runs and the terminal demo: thin callers of the pipeline."""
