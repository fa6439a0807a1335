"""GET /images/search: the registry a term names (dockerd's splitReposSearchTerm), searched as
it offers: Docker Hub through its search index, any other registry through its catalog
(/v2/_catalog), filtered by the term. Results in dockerd's shape; filters is-official,
is-automated and stars as dockerd applies them."""

from __future__ import annotations

import asyncio

from daemon.distribution.registries import RegistryClients, to_daemon_error
from daemon.errors import InvalidParameter
from daemon.util.filters import Filters
from storage.registry import DOCKER_HUB, RegistryClient

DEFAULT_LIMIT = 25


def split_term(term: str) -> tuple[str, str]:
    """(registry, what to look for): the first part names a registry when it looks like a host."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, term


def _catalog_results(client: RegistryClient, domain: str, remote: str, limit: int) -> list[dict]:
    wanted = remote.lower()
    names = [r for r in client.catalog() if wanted in r.lower()]
    return [{"name": f"{domain}/{r}", "description": "", "star_count": 0, "is_official": False,
             "is_automated": False} for r in sorted(names)[:limit]]


def _keep(result: dict, filters: Filters) -> bool:
    official, automated = filters.bool("is-official"), filters.bool("is-automated")
    if official is not None and bool(result.get("is_official")) != official:
        return False
    if automated is not None and bool(result.get("is_automated")) != automated:
        return False
    stars = filters.get("stars")
    return not stars or int(result.get("star_count") or 0) >= max(int(s) for s in stars)


async def search(registries: RegistryClients, term: str, limit: int | None, filters_raw: str | None,
                 auth_header: str | None) -> list[dict]:
    if not term:
        raise InvalidParameter("the search term is empty")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= 100:
        raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
    filters = Filters.parse(filters_raw, {"is-official", "is-automated", "stars"})
    for s in filters.get("stars"):
        if not s.isdigit():
            raise InvalidParameter(f"invalid filter 'stars={s}'")
    domain, remote = split_term(term)
    client = registries.client(domain, auth_header)
    try:
        if domain == DOCKER_HUB:
            results = await asyncio.to_thread(client.search_index, remote, limit)
        else:
            results = await asyncio.to_thread(_catalog_results, client, domain, remote, limit)
    except Exception as e:  # noqa: BLE001 - mapped to the API's errors
        raise to_daemon_error(e) from e
    finally:
        client.close()
    return [r for r in results if isinstance(r, dict) and _keep(r, filters)]
