"""The engine: configuration, entry point, state store, container and image services, events."""
