"""The Gradio web UI mounted at ``/ui``: the page (``app``), what it shows (``render``), its upload and file
routes (``uploads``) and the Worklist tab (``worklist``)."""
