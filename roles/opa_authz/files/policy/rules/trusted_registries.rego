# Rule trusted_registries of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# trusted_registries (docker_authz_trusted_registries): images by name; Docker Hub is
# docker.io ("busybox" is docker.io/library/busybox).
# ------------------------------------------------------------------------------------------
images_used := images if {
	creating
	images := {image | image := field(["image"]); is_string(image)}
}

images_used := images if {
	service_spec
	images := {image | image := field(service_path(["image"])); is_string(image)}
}

images_used := images if {
	op == "image_create"
	images := {image | values := query_values("fromImage"); image := values[_]; is_string(image)}
}

hub_hosts := {"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true}

registry_host(part) if {
	contains(part, ".")
}

registry_host(part) if {
	contains(part, ":")
}

registry_host(part) if {
	part == "localhost"
}

# The repository without tag or digest, qualified with its registry.
image_repository(image) := repository if {
	halves := split(lower(image), "@")
	parts := split(halves[0], "/")
	last := count(parts) - 1
	tagged := split(parts[last], ":")
	names := array.concat([part | part := parts[i]; i < last], [tagged[0]])
	repository := qualify(names)
}

qualify(names) := repository if {
	count(names) == 1
	repository := concat("/", array.concat(["docker.io", "library"], names))
}

qualify(names) := repository if {
	count(names) > 1
	not registry_host(names[0])
	repository := concat("/", array.concat(["docker.io"], names))
}

qualify(names) := repository if {
	count(names) > 1
	registry_host(names[0])
	hub_hosts[names[0]]
	repository := concat("/", array.concat(["docker.io"], [part | part := names[i]; i > 0]))
}

qualify(names) := repository if {
	count(names) > 1
	registry_host(names[0])
	not hub_hosts[names[0]]
	repository := concat("/", names)
}

trusted_repository(repository) if {
	entry := config.trusted_registries[_]
	repository == entry
}

trusted_repository(repository) if {
	entry := config.trusted_registries[_]
	startswith(repository, concat("", [entry, "/"]))
}

deny contains msg if {
	images := images_used
	image := images[_]
	repository := image_repository(image)
	not trusted_repository(repository)
	msg := concat("", ["trusted_registries: image ", image, " (", repository, ") is not from a trusted registry"])
}
