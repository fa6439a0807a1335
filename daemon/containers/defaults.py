"""The daemon's defaults for containers that do not set their own (`--log-driver`, `--log-opt`,
`--default-shm-size`, `--default-ulimit`), as typed values the create and start paths read.

One mutable object shared by the engine and the container service: a SIGHUP that changes
`default-ulimits` changes it here, and containers started after that get the new limits
(as dockerd, which merges them at start, not at create).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.spec import DEFAULT_SHM_SIZE


@dataclass
class ContainerDefaults:
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    shm_size: int = DEFAULT_SHM_SIZE
    # HostConfig.Ulimits entries: {"Name": ..., "Soft": ..., "Hard": ...}
    ulimits: list[dict] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)

    def with_dns(self, hc: dict) -> dict:
        """`hc` with the daemon's --dns/--dns-search/--dns-opt where the container sets none, each
        on its own (dockerd); a copy: the stored HostConfig keeps what the client asked for."""
        if not (self.dns or self.dns_search or self.dns_options):
            return hc
        out = dict(hc)
        for key, value in (("Dns", self.dns), ("DnsSearch", self.dns_search), ("DnsOptions", self.dns_options)):
            if not out.get(key) and value:
                out[key] = list(value)
        return out

    def log_config(self, requested: dict | None) -> dict:
        """dockerd's mergeAndVerifyLogConfig: no type means the daemon's driver, and for that
        driver the daemon's options fill in the keys the container does not set."""
        requested = requested or {}
        driver = requested.get("Type") or self.log_driver
        opts = dict(requested.get("Config") or {})
        if driver == self.log_driver:
            for k, v in self.log_opts.items():
                opts.setdefault(k, v)
        return {"Type": driver, "Config": opts}

    def merged_ulimits(self, own: list[dict] | None) -> list[dict]:
        """The container's ulimits, then the daemon's for the names it does not set."""
        own = list(own or [])
        names = {u.get("Name") for u in own if isinstance(u, dict)}
        return own + [u for u in self.ulimits if u["Name"] not in names]
