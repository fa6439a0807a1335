"""One router per resource: each handler turns HTTP into one call on its api.backends Protocol."""

from fastapi._compat import shared as _fastapi_compat

# FastAPI asks of every handler parameter (`name: str` of a path) whether its type is a
# pydantic v1 model, and to know it imports pydantic.v1 (a whole second pydantic: 1.7 MiB
# of the daemon's memory). No handler here takes a model of either version.
if hasattr(_fastapi_compat, "is_pydantic_v1_model_class"):
    _fastapi_compat.is_pydantic_v1_model_class = lambda cls: False
