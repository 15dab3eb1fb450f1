"""The web page people use: its static files and the live-update feed, served by the HTTP
app (`ingest.http.web`)."""
