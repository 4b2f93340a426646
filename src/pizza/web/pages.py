"""The demo page served at ``/`` (filled in by the web front end; empty means /docs)."""

HOME = ""
