"""The web page people use: static files, the session cookie and the live-update stream,
served by the HTTP app (`ingest.http_app`)."""
