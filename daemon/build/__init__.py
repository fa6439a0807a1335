"""The classic builder behind POST /build: Dockerfile parsing and variable expansion, the build
context (an untrusted archive) with its .dockerignore, the step executor that drives containers,
images and the layer store, and the build cache with its prune."""
