// Disk and device-node mounts into a running container, done by a
// re-executed helper before the Go runtime starts: setns(2) into a mount
// namespace needs a single-threaded process, which a Go program never is.
//
// Invocation (see hotplug.go):
//
//	EXE moat-hotplug TARGET MODE OP... [-- IGNORED...]
//
// TARGET is "fd" (a pidfd of the container's init is fd 3) or "env"
// (liblxc's start-host hook: init's pid is in LXC_PID). MODE is "u" for a
// container with its own user namespace, "p" for a privileged one. Each OP
// is "mr:HEXSRC:HEXDST" (read-only bind), "mw:HEXSRC:HEXDST" (read-write
// bind) or "u:HEXDST" (detach the mount at DST). SRC must be a canonical
// host path: a symlink in it is refused. Paths are hex-encoded so
// that liblxc's hook command line (run by /bin/sh) needs no quoting.
// Everything after "--" is what liblxc appends to a hook and is ignored.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hotplug.h"

// Symlinks followed while resolving a container path, as the kernel's
// own limit.
#define MOAT_HOTPLUG_MAX_LINKS 40

// Set by moat_hotplug_walk when it refuses a symlink, for the message.
static int moat_hotplug_badlink;

// The container's liblxc log when run as a hook: liblxc keeps a hook's
// output below the log level moat uses, and the driver reports a failed
// start from the ERROR lines of that log.
static int moat_hotplug_logfd = -1;

static void moat_hotplug_fail(const char *op, const char *what, int err)
{
	if (moat_hotplug_badlink)
		what = "the path crosses a symlink that container root does not own";
	fprintf(stderr, "%s: %s: %s\n", op, what, strerror(err));
	if (moat_hotplug_logfd >= 0)
		dprintf(moat_hotplug_logfd, "moat-hotplug ERROR %s: %s: %s\n", op, what, strerror(err));
}

static int moat_hotplug_unhex(const char *in, char *out, size_t size)
{
	size_t n = strlen(in);
	if (n % 2 || n / 2 + 1 > size)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		unsigned int b;
		if (sscanf(in + i, "%2x", &b) != 1)
			return -1;
		out[i / 2] = (char)b;
	}
	out[n / 2] = '\0';
	if (strlen(out) != n / 2)
		return -1; // an embedded NUL
	return 0;
}

// moat_hotplug_walk resolves path below the current root, one component
// at a time with O_NOFOLLOW, so nothing the container does to its tree
// can lead it outside that root (it is the container's root: the caller
// has joined the container's mount namespace). Symlinks are followed
// only when owned by root of the current user namespace: a container
// user must not redirect a mount an admin asked for to, say, /etc.
// Missing components are created when create is set (the last one as a
// directory if dir, else as an empty file). It returns an O_PATH fd of
// the target, *parent an O_PATH fd of its directory and name its last
// component.
static int moat_hotplug_walk(const char *path, int create, int dir, int *parent, char *name)
{
	char rest[2 * PATH_MAX], link[PATH_MAX];
	int links = 0;
	int dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -1;
	if (strlen(path) >= sizeof(rest)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	strcpy(rest, path);
	for (;;) {
		char *p = rest;
		while (*p == '/')
			p++;
		if (*p == '\0') {
			errno = EINVAL; // the container root itself
			goto fail;
		}
		char *end = strchrnul(p, '/');
		size_t len = end - p;
		if (len > NAME_MAX) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		char comp[NAME_MAX + 1];
		memcpy(comp, p, len);
		comp[len] = '\0';
		memmove(rest, end, strlen(end) + 1);
		int last = 1;
		for (char *q = rest; *q; q++)
			if (*q != '/')
				last = 0;
		if (strcmp(comp, ".") == 0 && !last)
			continue;

		int fd = openat(dirfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			if (!last || dir) {
				if (mkdirat(dirfd, comp, 0755) < 0 && errno != EEXIST)
					goto fail;
			} else {
				int f = openat(dirfd, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (f < 0 && errno != EEXIST)
					goto fail;
				if (f >= 0)
					close(f);
			}
			fd = openat(dirfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0)
			goto fail;
		struct stat st;
		if (fstat(fd, &st) < 0) {
			close(fd);
			goto fail;
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(fd, "", link, sizeof(link) - 1);
			close(fd);
			if (st.st_uid != 0) {
				moat_hotplug_badlink = 1;
				errno = EPERM;
				goto fail;
			}
			if (++links > MOAT_HOTPLUG_MAX_LINKS) {
				errno = ELOOP;
				goto fail;
			}
			if (n < 0)
				goto fail;
			link[n] = '\0';
			if (strlen(link) + 1 + strlen(rest) >= sizeof(rest)) {
				errno = ENAMETOOLONG;
				goto fail;
			}
			// rest becomes LINK/rest; an absolute link restarts at the root.
			memmove(rest + n + 1, rest, strlen(rest) + 1);
			memcpy(rest, link, n);
			rest[n] = '/';
			if (link[0] == '/') {
				close(dirfd);
				dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (dirfd < 0)
					return -1;
			}
			continue;
		}
		if (last) {
			*parent = dirfd;
			strcpy(name, comp);
			return fd;
		}
		if (!S_ISDIR(st.st_mode)) {
			close(fd);
			errno = ENOTDIR;
			goto fail;
		}
		close(dirfd);
		dirfd = fd;
	}
fail:;
	int err = errno;
	close(dirfd);
	errno = err;
	return -1;
}

// moat_hotplug_join enters the container: its user namespace first (which
// gives this process every capability there, over the container's mount
// namespace), then its mount namespace, and takes container root's ids so
// that what it creates belongs to the container.
static int moat_hotplug_join_user(int pidfd, int userns, const char *op)
{
	if (userns && setns(pidfd, CLONE_NEWUSER) < 0) {
		moat_hotplug_fail(op, "joining the user namespace", errno);
		return -1;
	}
	return 0;
}

static int moat_hotplug_join_mnt(int pidfd, int userns, const char *op)
{
	if (setns(pidfd, CLONE_NEWNS) < 0) {
		moat_hotplug_fail(op, "joining the mount namespace", errno);
		return -1;
	}
	if (userns && (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
		moat_hotplug_fail(op, "becoming container root", errno);
		return -1;
	}
	umask(022);
	return 0;
}

// moat_hotplug_lock returns a copy of tree whose mount flags the container
// cannot change. The kernel locks the flags (read-only among them) of
// every mount it copies into a mount namespace owned by a less privileged
// user namespace; moving a mount does not lock it. So the tree is attached
// in a private namespace owned by the host, this process joins the
// container's user namespace and unshares a new mount namespace (now owned
// by it: the copy is locked), and the locked copy is cloned again.
static int moat_hotplug_lock(int tree, int pidfd, const char *op)
{
	if (unshare(CLONE_NEWNS) < 0) {
		moat_hotplug_fail(op, "new mount namespace", errno);
		return -1;
	}
	// Nothing done here may reach the host's mount table.
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		moat_hotplug_fail(op, "making mounts private", errno);
		return -1;
	}
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		moat_hotplug_fail(op, "scratch tmpfs", errno);
		return -1;
	}
	int scratch = fsmount(fs, FSMOUNT_CLOEXEC, 0);
	close(fs);
	if (scratch < 0 || move_mount(scratch, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0 || fchdir(scratch) < 0) {
		moat_hotplug_fail(op, "scratch tmpfs", errno);
		return -1;
	}
	struct stat st;
	if (fstat(tree, &st) < 0) {
		moat_hotplug_fail(op, "source", errno);
		return -1;
	}
	int made = S_ISDIR(st.st_mode) ? mkdir("m", 0700) : close(open("m", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	if (made < 0 || move_mount(tree, "", AT_FDCWD, "m", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		moat_hotplug_fail(op, "staging the mount", errno);
		return -1;
	}
	if (moat_hotplug_join_user(pidfd, 1, op) < 0)
		return -1;
	// The working directory follows into the copy.
	if (unshare(CLONE_NEWNS) < 0) {
		moat_hotplug_fail(op, "locking copy of the mount namespace", errno);
		return -1;
	}
	int locked = open_tree(AT_FDCWD, "m", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (locked < 0)
		moat_hotplug_fail(op, "cloning the locked mount", errno);
	return locked;
}

// moat_hotplug_open_source opens a mount source by the canonical path the
// daemon resolved and checked against the project's policy. No symlink is
// followed in any component: one put in since that check (a directory
// swapped for a link to /etc) would send the mount elsewhere, so the open
// fails instead. A real directory renamed into place is still at the
// checked path, which is what was allowed.
static int moat_hotplug_open_source(const char *src, const char *op)
{
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = syscall(SYS_openat2, AT_FDCWD, src, &how, sizeof(how));
	if (fd < 0) {
		char what[PATH_MAX + 64];
		if (errno == ELOOP)
			snprintf(what, sizeof(what), "source %s has a symlink in its path, which a mount source must not", src);
		else
			snprintf(what, sizeof(what), "source %s", src);
		moat_hotplug_fail(op, what, errno);
	}
	return fd;
}

static int moat_hotplug_mount(int pidfd, int userns, int readonly, const char *src, const char *dst, const char *op)
{
	int srcfd = moat_hotplug_open_source(src, op);
	if (srcfd < 0)
		return -1;
	struct stat st;
	if (fstat(srcfd, &st) < 0) {
		moat_hotplug_fail(op, "source", errno);
		return -1;
	}
	int tree = open_tree(srcfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (tree < 0) {
		moat_hotplug_fail(op, "cloning the source", errno);
		return -1;
	}
	if (readonly) {
		struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
		if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
			moat_hotplug_fail(op, "making the mount read-only", errno);
			return -1;
		}
	}
	if (userns) {
		// Lock every flag, not only read-only: a source on a nosuid or
		// nodev host mount keeps those too.
		tree = moat_hotplug_lock(tree, pidfd, op);
		if (tree < 0)
			return -1;
	}
	if (moat_hotplug_join_mnt(pidfd, userns, op) < 0)
		return -1;
	int parent;
	char name[NAME_MAX + 1];
	int target = moat_hotplug_walk(dst, 1, S_ISDIR(st.st_mode), &parent, name);
	if (target < 0) {
		moat_hotplug_fail(op, "mount point in the container", errno);
		return -1;
	}
	// Linux (checked on 6.18) moves a detached tree, which lives in an
	// anonymous mount namespace, onto a mount of the caller's own
	// namespace only, hence the setns; the root of the tree must not be
	// MNT_LOCKED, which an open_tree clone's root never is. The clone made
	// on the host could be moved in as well, but its flags would not be
	// locked: TestReadonlyDiskRemount fails without moat_hotplug_lock.
	if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
		moat_hotplug_fail(op, "attaching the mount", errno);
		return -1;
	}
	return 0;
}

static int moat_hotplug_umount(int pidfd, int userns, const char *dst, const char *op)
{
	if (moat_hotplug_join_user(pidfd, userns, op) < 0 || moat_hotplug_join_mnt(pidfd, userns, op) < 0)
		return -1;
	int parent;
	char name[NAME_MAX + 1];
	int target = moat_hotplug_walk(dst, 0, 0, &parent, name);
	if (target < 0) {
		if (errno == ENOENT)
			return 0; // nothing left to detach
		moat_hotplug_fail(op, "mount point in the container", errno);
		return -1;
	}
	struct stat st;
	int ret;
	// umount2 takes a path: reach the target through the fds of the walk.
	if (fstat(target, &st) == 0 && S_ISDIR(st.st_mode))
		ret = fchdir(target) < 0 ? -1 : umount2(".", MNT_DETACH);
	else
		ret = fchdir(parent) < 0 ? -1 : umount2(name, MNT_DETACH | UMOUNT_NOFOLLOW);
	// EINVAL: not a mount point, the container detached it already.
	if (ret < 0 && errno != EINVAL) {
		moat_hotplug_fail(op, "detaching the mount", errno);
		return -1;
	}
	return 0;
}

// moat_hotplug_op runs one operation in a child: joining namespaces cannot
// be undone, and each operation starts from the host's.
static int moat_hotplug_op(int pidfd, int userns, const char *op)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int ok;
	if (strncmp(op, "mr:", 3) == 0 || strncmp(op, "mw:", 3) == 0) {
		const char *colon = strchr(op + 3, ':');
		char hex[2 * PATH_MAX + 1];
		ok = colon && (size_t)(colon - op - 3) < sizeof(hex);
		if (ok) {
			memcpy(hex, op + 3, colon - op - 3);
			hex[colon - op - 3] = '\0';
			ok = moat_hotplug_unhex(hex, src, sizeof(src)) == 0 && moat_hotplug_unhex(colon + 1, dst, sizeof(dst)) == 0;
		}
	} else if (strncmp(op, "u:", 2) == 0) {
		ok = moat_hotplug_unhex(op + 2, dst, sizeof(dst)) == 0;
	} else {
		ok = 0;
	}
	if (!ok || (op[0] == 'm' && src[0] != '/') || dst[0] != '/') {
		moat_hotplug_fail(op, "bad operation", EINVAL);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		moat_hotplug_fail(op, "fork", errno);
		return -1;
	}
	if (pid == 0) {
		int r = op[0] == 'm' ? moat_hotplug_mount(pidfd, userns, op[1] == 'r', src, dst, dst)
				     : moat_hotplug_umount(pidfd, userns, dst, dst);
		_exit(r < 0 ? 1 : 0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int moat_hotplug_main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[3], "u") && strcmp(argv[3], "p"))) {
		fprintf(stderr, "usage: moat-hotplug fd|env u|p OP...\n");
		return 2;
	}
	int pidfd;
	if (strcmp(argv[2], "fd") == 0) {
		pidfd = 3;
	} else if (strcmp(argv[2], "env") == 0) {
		const char *conf = getenv("LXC_CONFIG_FILE");
		const char *slash = conf ? strrchr(conf, '/') : NULL;
		char log[PATH_MAX];
		if (slash && snprintf(log, sizeof(log), "%.*s/lxc.log", (int)(slash - conf), conf) < (int)sizeof(log))
			moat_hotplug_logfd = open(log, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
		const char *pid = getenv("LXC_PID");
		pidfd = pid ? pidfd_open(atoi(pid), 0) : -1;
		if (pidfd < 0) {
			moat_hotplug_fail("LXC_PID", "container init", pid ? errno : ESRCH);
			return 1;
		}
	} else {
		fprintf(stderr, "usage: moat-hotplug fd|env u|p OP...\n");
		return 2;
	}
	int userns = strcmp(argv[3], "u") == 0;
	for (int i = 4; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (moat_hotplug_op(pidfd, userns, argv[i]) < 0)
			return 1;
	return 0;
}

// Runs before the Go runtime, in every binary that links this package;
// only the helper invocation is acted upon.
__attribute__((constructor)) static void moat_hotplug_ctor(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], MOAT_HOTPLUG_ARG) == 0)
		exit(moat_hotplug_main(argc, argv));
}
