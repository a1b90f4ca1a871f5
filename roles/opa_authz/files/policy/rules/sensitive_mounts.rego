# Rule sensitive_mounts (docker_authz_deny_sensitive_mounts) of the hardening.docker_authz
# policy (docs/policy.md); uses lib.rego. Binds, Mounts of type bind, volume mounts and named
# volumes with a host "device" option, service mounts, and the plugin's BindMounts (Resolved
# follows symlinks in the plugin's view of the filesystem).
package docker.authz

import rego.v1
import data.docker.authz.config

deny contains msg if {
	raw := host_paths[_]
	cleaned := clean_path(raw)
	base := config.sensitive_host_paths[_]
	relation := path_relation(cleaned, base)
	msg := concat("", ["sensitive_mounts: host path ", cleaned, relation, base])
}

# Cleaned paths against a sensitive path: the same or under it ("/etc/x" and "/etc"), or
# holding it ("/" holds everything, "/run" holds "/run/docker.sock").
path_relation(path, base) := " is or is under the sensitive path " if {
	startswith(concat("", [path, "/"]), concat("", [base, "/"]))
}

path_relation(path, base) := " holds the sensitive path " if {
	path != base
	startswith(concat("", [base, "/"]), concat("", [path, "/"]))
}

path_relation(path, base) := " holds the sensitive path " if {
	path == "/"
	base != "/"
}

# Host paths cleaned like Go's filepath.Clean ("..", "//", ".", trailing "/"; a relative path
# is relative to "/", dockerd's working directory). Rego cannot loop, so ".." is resolved
# arithmetically: the depth after each name is the names so far minus twice the ".." so far,
# floored at the root; a name survives unless a later depth falls below its own.
clean_path(raw) := cleaned if {
	parts := split(raw, "/")
	names := [name | name := parts[_]; name != ""; name != "."]
	sums := [total | names[i]; total := (i + 1) - (2 * count([k | names[k] == ".."; k <= i]))]
	depths := [depth | total := sums[i]; depth := total - min(array.concat([0], [s | s := sums[k]; k <= i]))]
	kept := [name | name := names[i]; name != ".."; count([j | depths[j] < depths[i]; j > i]) == 0]
	cleaned := concat("", ["/", concat("/", kept)])
}

# The Binds strings of a create (both places) and the Mounts lists that hold entries (their
# paths in the body: a create's two places, a service's ContainerSpec), read once for every rule
# below. (mount_bases is read as mount_bases[base]: with [_], regopy's v0 dialect yields its
# members as true, not as the paths.)
create_binds := binds if {
	creating
	binds := [bind | list := body_levels[_].binds; is_array(list); bind := list[_]; is_string(bind)]
}

mount_bases contains base if {
	creating
	prefix := hc_prefixes[_]
	base := array.concat(prefix, ["mounts"])
	mounts := field(base)
	is_array(mounts)
	count(mounts) > 0
}

mount_bases contains base if {
	service_spec
	base := service_path(["mounts"])
	mounts := field(base)
	is_array(mounts)
	count(mounts) > 0
}

host_paths := paths if {
	creating
	binds := {source | bind := create_binds[_]; parts := split(bind, ":"); count(parts) > 1; source := parts[0]}
	plugin := {source | entry := input.BindMounts[_]; source := entry.Source; is_string(source)}
	resolved := {source | entry := input.BindMounts[_]; source := entry.Resolved; is_string(source); source != ""}
	paths := ((binds | mounted_sources) | plugin) | resolved
}

host_paths := mounted_sources if {
	service_spec
}

host_paths := paths if {
	op == "volume_create"
	paths := volume_option_paths(["driveropts"])
}

# The host paths of the Mounts lists (bind sources and volume devices), a create's or a service's.
mounted_sources := sources if {
	sources := {source | mount_bases[base]; source := mount_sources(base)[_]}
}

mount_sources(base) := paths if {
	mounts := field(base)
	is_array(mounts)
	binds := {source | mounts[i]; kind := field(array.concat(base, [i, "type"])); is_string(kind); lower(kind) == "bind"; source := field(array.concat(base, [i, "source"])); is_string(source)}
	devices := {source | mounts[i]; source := volume_option_paths(array.concat(base, [i, "volumeoptions", "driverconfig", "options"]))[_]}
	paths := binds | devices
}

# The host paths a local-driver volume mounts: "device" (mount(2) gets it as given), and the
# lowerdir/upperdir/workdir of an overlay in "o".
volume_option_paths(base) := paths if {
	devices := {device | device := field(array.concat(base, ["device"])); is_string(device)}
	dirs := {dir | options := field(array.concat(base, ["o"])); is_string(options); item := split(options, ",")[_]; at := indexof(item, "="); at > 0; overlay_dir_options[lower(trim(substring(item, 0, at), " "))]; dir := split(substring(item, at + 1, -1), ":")[_]; dir != ""}
	paths := devices | dirs
}

overlay_dir_options := {"lowerdir": true, "upperdir": true, "workdir": true}

# Local-driver volume options whose "type" is a kernel filesystem: dockerd hands any type to
# mount(2) in the host's namespaces (daemon/volume/local/local_unix.go checks only the option
# names), so type=proc is the HOST's /proc, sysfs/debugfs/tracefs/securityfs/cgroup/bpf/... the
# host's kernel interfaces, whatever "device" says. Allowed: the types below (mount(2) compares
# the type exactly), and any type when "o" asks for a bind ("bind"/"rbind" exactly, as
# moby/sys/mount reads it: the kernel then ignores the type and "device" is a host path, judged
# above).
deny contains msg if {
	volume_option_bases[base]
	kind := field(array.concat(base, ["type"]))
	is_string(kind)
	not volume_bind(base)
	not local_volume_types[kind]
	msg := concat("", ["sensitive_mounts: local volume type \"", kind, "\" is not allowed (a kernel filesystem type such as proc or sysfs mounts the host's own; allowed: none with o=bind, tmpfs, overlay, nfs, nfs4, cifs, smb3, ext2, ext3, ext4, xfs, btrfs, vfat, exfat)"])
}

local_volume_types := {
	"none": true, "tmpfs": true, "overlay": true, "nfs": true, "nfs4": true, "cifs": true,
	"smb3": true, "ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true,
	"vfat": true, "exfat": true,
}

volume_bind(base) if {
	options := field(array.concat(base, ["o"]))
	is_string(options)
	item := split(options, ",")[_]
	flag := volume_bind_flags[_]
	item == flag
}

# (A list compared with ==: a set or object looked up with an item of split() crashes regopy.)
volume_bind_flags := ["bind", "rbind"]

# The driver options of every volume a request makes: POST /volumes/create's DriverOpts, and
# the DriverConfig.Options of Mounts of type volume (create, both HostConfig places; services).
volume_option_bases contains base if {
	op == "volume_create"
	base := ["driveropts"]
}

volume_option_bases contains base if {
	mount_bases[mounts_base]
	mounts := field(mounts_base)
	mounts[i]
	base := array.concat(mounts_base, [i, "volumeoptions", "driverconfig", "options"])
}

# Shared mount propagation (CIS 5.20): with shared or rshared, mounts made in the container
# appear on the host and the host's later mounts in the container. Binds options (the third
# field, comma-separated), Mounts[].BindOptions.Propagation on create and services. The daemon
# compares the words exactly; any case is denied here.
deny contains msg if {
	shared_propagations[what]
	msg := concat("", ["sensitive_mounts: shared mount propagation (", what, ") is not allowed: mounts would propagate between the container and the host (CIS 5.20)"])
}

shared_propagations contains bind if {
	bind := create_binds[_]
	parts := split(bind, ":")
	count(parts) == 3
	item := split(parts[2], ",")[_]
	shared_propagation(item)
}

shared_propagations contains mode if {
	mount_bases[base]
	mode := propagation_modes(base)[_]
}

propagation_modes(base) := modes if {
	mounts := field(base)
	is_array(mounts)
	modes := {mode | mounts[i]; mode := field(array.concat(base, [i, "bindoptions", "propagation"])); is_string(mode); shared_propagation(mode)}
}

shared_propagation(value) if {
	word := shared_propagation_words[_]
	lower(value) == word
}

shared_propagation_words := ["shared", "rshared"]

# docker_authz_allowed_bind_sources (empty = off): every host path a request binds must be, or
# be under, one of them. The complete answer to a deny-list: Binds with an absolute source (a
# source without "/" is a named volume), Mounts of type bind, the plugin's BindMounts, service
# bind mounts, a local volume's device when o asks for a bind, and overlay dirs.
deny contains msg if {
	count(config.allowed_bind_sources) > 0
	bind_sources[raw]
	cleaned := clean_path(raw)
	not allowed_bind_source(cleaned)
	msg := concat("", ["sensitive_mounts: host path ", cleaned, " is not under an allowed bind source (docker_authz_allowed_bind_sources)"])
}

allowed_bind_source(path) if {
	base := config.allowed_bind_sources[_]
	startswith(concat("", [path, "/"]), concat("", [base, "/"]))
}

bind_sources contains source if {
	bind := create_binds[_]
	parts := split(bind, ":")
	count(parts) > 1
	source := parts[0]
	startswith(source, "/")
}

bind_sources contains source if {
	mount_bases[base]
	source := mount_bind_sources(base)[_]
}

bind_sources contains source if {
	creating
	entry := input.BindMounts[_]
	source := entry.Source
	is_string(source)
	source != ""
}

bind_sources contains source if {
	creating
	entry := input.BindMounts[_]
	source := entry.Resolved
	is_string(source)
	source != ""
}

bind_sources contains source if {
	volume_option_bases[base]
	volume_bind(base)
	source := field(array.concat(base, ["device"]))
	is_string(source)
}

bind_sources contains dir if {
	volume_option_bases[base]
	options := field(array.concat(base, ["o"]))
	is_string(options)
	item := split(options, ",")[_]
	at := indexof(item, "=")
	at > 0
	name := lower(trim(substring(item, 0, at), " "))
	overlay_dir_options[name]
	dir := split(substring(item, at + 1, -1), ":")[_]
	dir != ""
}

mount_bind_sources(base) := paths if {
	mounts := field(base)
	is_array(mounts)
	paths := {source | mounts[i]; kind := field(array.concat(base, [i, "type"])); is_string(kind); lower(kind) == "bind"; source := field(array.concat(base, [i, "source"])); is_string(source)}
}
