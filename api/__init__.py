"""HTTP: the FastAPI app, one router per resource, and the hijack protocol for attach/exec."""
