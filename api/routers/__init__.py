"""One router per resource: each handler turns HTTP into one call on its api.backends Protocol."""
