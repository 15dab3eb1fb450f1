"""Request and response shapes of the JSON API (pydantic), one module per resource. The
HTTP routes validate with these and serialise through them; the use cases never see HTTP."""
