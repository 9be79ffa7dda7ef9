"""The host's container engine: use or provision one (provision), the base image, the healthcheck runner, host packages."""
