"""Cached test images: Debian 12 Docker-in-Docker hosts, busybox and the opa-docker-authz double."""
