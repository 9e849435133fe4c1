"""The static browser page (demo_app/browser/) built into a plain folder: triage inside the user's browser."""
