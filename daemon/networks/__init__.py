"""Networking, as two services with the table of live sandboxes between them:
NetworkService (service.py) owns the networks — CRUD, IPAM, bridges, the firewall model;
SandboxService (endpoints.py) owns each container's side — its netns, veths, addresses and
routes (there), published ports (publish.py), hosts files and links (names.py). Docker's
JSON for networks, endpoints (network.py) and ports (ports.py) is translated here."""
