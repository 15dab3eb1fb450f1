"""The HTTP front door: the JSON API, the web page's server side and the webhooks, on
FastAPI + uvicorn (`app.create_app`, `server.make_http_server`)."""
