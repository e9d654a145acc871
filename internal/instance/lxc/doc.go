// Package lxcdriver runs system containers with liblxc (through go-lxc).
//
// The driver never sees HTTP or config keys: the instance layer hands it a
// validated Spec and gets back errors wrapping the sentinels in spec.go.
//
// # Why a helper process
//
// liblxc forks the calling process to start a container (the monitor is a
// forked copy that lives as long as the container) and to attach to one.
// Forking a busy multi-threaded Go daemon copies its heap and can leave the
// child with locks other threads held, so the daemon never calls those
// entry points itself. It re-executes its own binary (/proc/self/exe):
// "forkstart" is a fresh, idle helper that starts one container and exits;
// "forkexecd" is one long-lived helper that serves every Exec (see
// execserver.go), since a process start per exec would cost more than the
// attach itself. The binary's main must therefore call RunHelper first;
// tests do so from TestMain. Stop, freeze, state and cgroup updates only
// talk to the monitor's command socket and stay in-process.
//
// # Isolation
//
// Unprivileged containers get a user namespace with the spec's map. Their
// rootfs is moatd's overlay (package storage/overlay), which already shows
// the container's shifted ids, so images are never chowned and the driver
// bind-mounts it as it is. Privileged ones run with extra capability drops
// and read-only /proc/sys, /sys and cgroupfs (unless the admin forced
// nesting on them).
// Both get a cgroup namespace, a seccomp deny list, a device cgroup
// allow-list and a per-container directory of mode 0100 that only host
// root and the container's own root can traverse.
package lxcdriver
