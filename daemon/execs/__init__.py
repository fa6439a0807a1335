"""docker exec: exec instances inside running containers."""
