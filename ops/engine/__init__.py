"""The host's container engine: use or provision one (provision), the base image, the healthcheck runner,
isolation between Compose networks on Podman (isolation), host packages (apt, testenv)."""
