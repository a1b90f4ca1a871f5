# Rule sensitive_mounts of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# Host paths cleaned like Go's filepath.Clean ("..", "//", ".", trailing "/") before they are
# compared. Rego cannot loop, so ".." is resolved arithmetically: a segment survives unless a
# later ".." brings the depth below its own (depth = running sum floored at the root).
clean_path(raw) := cleaned if {
	not contains(raw, "..")
	parts := split(raw, "/")
	kept := [part | part := parts[_]; part != ""; part != "."]
	cleaned := concat("", ["/", concat("/", kept)])
}

clean_path(raw) := cleaned if {
	contains(raw, "..")
	parts := split(raw, "/")
	names := [part | part := parts[_]; part != ""; part != "."]
	sums := [total | names[i]; total := prefix_sum(names, i)]
	depths := [depth | sums[i]; depth := floored_depth(sums, i)]
	kept := [part | part := names[i]; part != ".."; not popped(depths, i)]
	cleaned := concat("", ["/", concat("/", kept)])
}

step(part) := -1 if {
	part == ".."
}

step(part) := 1 if {
	part != ".."
}

prefix_sum(names, i) := total if {
	total := sum([delta | part := names[k]; k <= i; delta := step(part)])
}

floored_depth(sums, i) := depth if {
	lowest := min(array.concat([0], [total | total := sums[k]; k <= i]))
	depth := sums[i] - lowest
}

popped(depths, i) if {
	later := depths[j]
	j > i
	later < depths[i]
}

under(path, base) if {
	path == base
}

under(path, base) if {
	base != "/"
	startswith(path, concat("", [base, "/"]))
}

# A path strictly above another: "/" holds everything, "/run" holds "/run/docker.sock".
above(path, child) if {
	path == "/"
	child != "/"
}

above(path, child) if {
	path != "/"
	startswith(child, concat("", [path, "/"]))
}

# ------------------------------------------------------------------------------------------
# sensitive_mounts (docker_authz_deny_sensitive_mounts): Binds, Mounts of type bind, volume
# mounts and named volumes with a host "device" option, service mounts, and the plugin's
# BindMounts (Resolved follows symlinks in the plugin's view of the filesystem).
# ------------------------------------------------------------------------------------------
bind_sources := paths if {
	creating
	values := hc_any("binds")
	paths := {source | binds := values[_]; is_array(binds); bind := binds[_]; is_string(bind); parts := split(bind, ":"); count(parts) > 1; source := parts[0]}
}

mount_sources(base) := paths if {
	mounts := field(base)
	is_array(mounts)
	binds := {source | entry := mounts[i]; kind := field(array.concat(base, [i, "type"])); is_string(kind); lower(kind) == "bind"; source := field(array.concat(base, [i, "source"])); is_string(source)}
	devices := {source | entry := mounts[i]; sources := volume_option_paths(array.concat(base, [i, "volumeoptions", "driverconfig", "options"])); source := sources[_]}
	paths := binds | devices
}

# The host paths a local-driver volume mounts: "device" (the local driver hands it to mount(2)
# as given, so a relative one is relative to dockerd's working directory, "/"), and the
# lowerdir/upperdir/workdir of an overlay in "o".
volume_option_paths(base) := paths if {
	devices := {source | device := field(array.concat(base, ["device"])); is_string(device); source := absolute_path(device)}
	dirs := {source | dir := overlay_dirs(base)[_]; source := absolute_path(dir)}
	paths := devices | dirs
}

overlay_dirs(base) := dirs if {
	options := field(array.concat(base, ["o"]))
	is_string(options)
	items := split(options, ",")
	dirs := {dir | item := items[_]; at := indexof(item, "="); at > 0; overlay_dir_options[lower(trim(substring(item, 0, at), " "))]; values := split(substring(item, at + 1, -1), ":"); dir := values[_]; dir != ""}
}

overlay_dir_options := {"lowerdir": true, "upperdir": true, "workdir": true}

absolute_path(raw) := raw if {
	startswith(raw, "/")
}

absolute_path(raw) := path if {
	not startswith(raw, "/")
	path := concat("", ["/", raw])
}

host_paths := paths if {
	creating
	mounts := {source | prefix := hc_prefixes[_]; sources := mount_sources(array.concat(prefix, ["mounts"])); source := sources[_]}
	plugin := {source | entry := input.BindMounts[_]; source := entry.Source; is_string(source)}
	resolved := {source | entry := input.BindMounts[_]; source := entry.Resolved; is_string(source); source != ""}
	paths := ((bind_sources | mounts) | plugin) | resolved
}

host_paths := paths if {
	service_spec
	paths := mount_sources(service_path(["mounts"]))
}

host_paths := paths if {
	op == "volume_create"
	paths := volume_option_paths(["driveropts"])
}

deny contains msg if {
	paths := host_paths
	raw := paths[_]
	cleaned := clean_path(raw)
	base := config.sensitive_host_paths[_]
	under(cleaned, base)
	msg := concat("", ["sensitive_mounts: host path ", cleaned, " is or is under the sensitive path ", base])
}

deny contains msg if {
	paths := host_paths
	raw := paths[_]
	cleaned := clean_path(raw)
	base := config.sensitive_host_paths[_]
	above(cleaned, base)
	msg := concat("", ["sensitive_mounts: host path ", cleaned, " holds the sensitive path ", base])
}
