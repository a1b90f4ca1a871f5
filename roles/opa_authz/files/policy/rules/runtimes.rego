# Rule runtimes of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# runtimes (docker_authz_restrict_runtimes): HostConfig.Runtime names a runtime of daemon.json
# or, since Docker 23, any containerd shim on the host's PATH (io.containerd.<name>.v<N>); the
# daemon looks names up exactly (empty is the daemon's default runtime). HostConfig.Annotations
# go to the OCI spec, where runtimes read some as configuration: runc and crun turn
# org.systemd.property.* into properties of the container's systemd unit, crun reads run.oci.*,
# Kata io.katacontainers.*, CDI-aware runtimes cdi.k8s.io/* (device injection), runc
# org.criu.* on checkpoint/restore. Those prefixes are denied in any case.
# ------------------------------------------------------------------------------------------
runtime_annotation_prefixes := ["org.systemd.property.", "run.oci.", "io.katacontainers.", "cdi.k8s.io/", "nvidia.cdi.k8s.io/", "org.criu."]

deny contains msg if {
	creating
	value := body_levels[_].runtime
	is_string(value)
	value != ""
	not config.allowed_runtimes[value]
	msg := concat("", ["runtimes: runtime ", value, " is not in docker_authz_allowed_runtimes"])
}

deny contains msg if {
	creating
	annotations := body_levels[_].annotations
	is_object(annotations)
	_ = annotations[key]
	prefix := runtime_annotation_prefixes[_]
	startswith(lower(key), prefix)
	msg := concat("", ["runtimes: annotation ", key, " is read by container runtimes as configuration (", prefix, "*) and is not allowed"])
}
