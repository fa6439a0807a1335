"""Networks (CRUD, IPAM, firewall) and the per-container sandbox (netns, veths, ports, name files)."""
