"""Container networking: hosts/hostname/resolv.conf files now; bridges, veths, IPAM and ports later."""
