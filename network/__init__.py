"""Networking mechanisms, told what to do by daemon/networks: bridges and veths (links),
network namespaces (netns), nftables rules (firewall), address pools (ipam), host port
sockets and the userland proxy (proxy), port values (ports), and the hosts, hostname and
resolv.conf files of containers (hosts)."""
