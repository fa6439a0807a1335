"""Images between this engine and registries: pull, push, login."""
