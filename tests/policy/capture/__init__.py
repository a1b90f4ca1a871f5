"""Capture real Docker API requests (AuthZReq objects) from a private dockerd into tests/policy/corpus/."""
