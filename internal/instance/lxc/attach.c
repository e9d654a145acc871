// Moat's container attach: runs a command in a running container's
// namespaces, cgroups and confinement without asking liblxc or the
// container's monitor anything. Everything it needs comes with the call.
//
// The caller is a multi-threaded Go process. The first child shares its
// memory and makes only raw system calls (sys below). The command's
// process is a copy and makes only async-signal-safe calls: no malloc, and
// set*id as raw system calls, since glibc's wrappers broadcast them to
// threads that do not exist in a child.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#include "attach.h"

// sys makes a system call without touching errno, returning -errno on
// failure: the first child shares the caller's memory, including the
// calling thread's errno and glibc's per-thread cancellation state, which
// libc wrappers write.
static long sys(long nr, long a1, long a2, long a3, long a4, long a5)
{
#ifdef __x86_64__
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
#else
#error "the attach is written for x86_64 (see also seccomp.go)"
#endif
}

enum { MSG_PID = 1, MSG_FAIL, MSG_MASTER };

struct msg {
	int kind;
	int stage;
	int val;
};

// report sends one message to the caller, with fd attached if >= 0.
static void report(int sock, int kind, int stage, int val, int fd)
{
	struct msg m = { kind, stage, val };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sys(SYS_sendmsg, sock, (long)&mh, MSG_NOSIGNAL, 0, 0) == -EINTR)
		;
}

static void __attribute__((noreturn)) fail_with(int sock, int stage, int err)
{
	report(sock, MSG_FAIL, stage, err, -1);
	for (;;)
		sys(SYS_exit_group, 126, 0, 0, 0, 0);
}

static void __attribute__((noreturn)) fail(int sock, int stage)
{
	fail_with(sock, stage, errno);
}

static int open_beneath(const char *path)
{
	// O_NONBLOCK: a FIFO put in the device's place cannot hang us.
	struct open_how how = {
		.flags = O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	return syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

// open_ptmx opens the multiplexer of the container's devpts instance.
// /dev/ptmx is liblxc's bind mount of /dev/pts/ptmx (or, in images that
// made it a symlink, /dev/pts/ptmx is tried directly); symlinks are never
// followed and what was opened must be a ptmx on devpts, so the container
// cannot point us at another device or filesystem.
static int open_ptmx(int *stage)
{
	*stage = MOAT_PTMX;
	int fd = open_beneath("/dev/ptmx");
	if (fd < 0 && errno == ELOOP)
		fd = open_beneath("/dev/pts/ptmx");
	if (fd < 0)
		return -1;
	struct stat st;
	struct statfs sfs;
	if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0)
		return -1;
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 2) || sfs.f_type != DEVPTS_SUPER_MAGIC) {
		*stage = MOAT_NOT_PTMX;
		errno = ENODEV;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -1;
	return fd;
}

// setup_pty makes a new pty of the container the controlling terminal
// and stdio, and hands its master to the caller.
static void setup_pty(const struct moat_attach *a, int sock)
{
	int stage;
	int master = open_ptmx(&stage);
	if (master < 0)
		fail(sock, stage);
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail(sock, MOAT_PTY);
	if (a->rows && a->cols) {
		struct winsize ws = { .ws_row = a->rows, .ws_col = a->cols };
		if (ioctl(master, TIOCSWINSZ, &ws) < 0)
			fail(sock, MOAT_PTY);
	}
	int peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (peer < 0)
		fail(sock, MOAT_PTY);
	if (setsid() < 0 || ioctl(peer, TIOCSCTTY, 0) < 0)
		fail(sock, MOAT_PTY);
	for (int i = 0; i < 3; i++)
		if (dup2(peer, i) < 0)
			fail(sock, MOAT_STDIO);
	close(peer);
	report(sock, MSG_MASTER, 0, 0, master);
	close(master);
}

static void write_str(int fd, const char *s)
{
	ssize_t n = write(fd, s, strlen(s));
	(void)n;
}

// exec_path runs argv[0] as execvpe would, with the requested PATH, and
// returns only on failure with the most telling errno.
static void exec_path(const struct moat_attach *a)
{
	const char *file = a->argv[0];
	if (strchr(file, '/')) {
		execve(file, a->argv, a->envp);
		return;
	}
	char buf[4096];
	size_t flen = strlen(file);
	int seen_eacces = 0;
	const char *p = a->path;
	for (;;) {
		const char *end = strchrnul(p, ':');
		size_t dlen = end - p;
		if (dlen == 0) { // an empty entry is the cwd
			p = ".";
			dlen = 1;
		}
		if (dlen + 1 + flen + 1 <= sizeof(buf)) {
			memcpy(buf, p, dlen);
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, file, flen + 1);
			execve(buf, a->argv, a->envp);
			if (errno == EACCES)
				seen_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				return;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	errno = seen_eacces ? EACCES : ENOENT;
}

// run_command is the second child: in the container's namespaces and
// cgroups, as the container's root. It confines itself like init, becomes
// the requested user and execs the command.
static void __attribute__((noreturn)) run_command(const struct moat_attach *a, int sock)
{
	for (int i = 0; i < a->n_cap_drop; i++)
		if (prctl(PR_CAPBSET_DROP, a->cap_drop[i], 0, 0, 0) < 0 && errno != EINVAL)
			fail(sock, MOAT_CAPS);
	// Loaded while still holding CAP_SYS_ADMIN in the container's user
	// namespace, so no_new_privs is not needed (and setuid programs in the
	// container keep working, as they do under init).
	if (a->filter_len) {
		struct sock_fprog prog = { a->filter_len, a->filter };
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			fail(sock, MOAT_SECCOMP);
	}
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0 ||
	    syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
		fail(sock, MOAT_IDS);
	// A change of ids resets dumpability from suid_dumpable.
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (chdir(a->cwd) < 0)
		fail(sock, MOAT_CWD);
	if (a->pty) {
		setup_pty(a, sock);
	} else {
		for (int i = 0; i < 3; i++)
			if (dup2(a->stdio[i], i) < 0)
				fail(sock, MOAT_STDIO);
	}
	// Everything else the caller had open closes at exec; the report
	// socket too, which tells the caller the exec happened.
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail(sock, MOAT_STDIO);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	// The daemon's umask (077) is for its own files: a command gets the
	// 022 LXD's get, or what it creates in the container is private.
	syscall(SYS_umask, 022);
	exec_path(a);
	// As a shell reports it: the caller sees the exit code.
	int e = errno;
	write_str(2, "exec ");
	write_str(2, a->argv[0]);
	write_str(2, e == ENOENT ? ": command not found\n" : ": cannot execute\n");
	_exit(e == ENOENT ? 127 : 126);
}

// join is the first child: it moves into init's cgroups, drops
// dumpability (container root must not ptrace or read the fds of a
// process that is still host root), enters init's namespaces and forks
// the command as a sibling, a child of the caller, inside the pid
// namespace.
static void __attribute__((noreturn)) join(const struct moat_attach *a, int sock)
{
	long ret = sys(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (ret < 0)
		fail_with(sock, MOAT_SETNS, -ret);
	// cgroup.procs is written before entering the cgroup namespace, where
	// the host's paths would no longer resolve.
	for (char **p = a->cgroup_procs; *p; p++) {
		long fd = sys(SYS_openat, AT_FDCWD, (long)*p, O_WRONLY | O_CLOEXEC, 0, 0);
		if (fd < 0)
			fail_with(sock, MOAT_CGROUP, -fd);
		ret = sys(SYS_write, fd, (long)"0", 1, 0, 0);
		if (ret != 1)
			fail_with(sock, MOAT_CGROUP, ret < 0 ? -ret : EIO);
		sys(SYS_close, fd, 0, 0, 0, 0);
	}
	ret = sys(SYS_setns, a->pidfd, a->nsflags, 0, 0, 0);
	if (ret < 0)
		fail_with(sock, MOAT_SETNS, -ret);
	// A copy of this memory from here on: the command may use libc.
	long pid = sys(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		fail_with(sock, MOAT_FORK, -pid);
	if (pid == 0)
		run_command(a, sock);
	report(sock, MSG_PID, 0, pid, -1);
	for (;;)
		sys(SYS_exit_group, 0, 0, 0, 0, 0);
}

// The first child shares this process's memory (CLONE_VM) rather than
// copying its page tables, which saves ~0.5 ms per exec. It runs on a
// stack of its own, makes only raw system calls (sys) and touches nothing
// but that stack and the request (kept until moat_attach_finish). The
// caller does not wait for it (no CLONE_VFORK): whatever the container
// does to it cannot hold up the exec server's loop.
#define JOIN_STACK (64 * 1024)

struct join_args {
	const struct moat_attach *a;
	int parent_end, child_end;
};

static int join_entry(void *p)
{
	struct join_args *ja = p;
	sys(SYS_close, ja->parent_end, 0, 0, 0, 0);
	join(ja->a, ja->child_end);
}

static void wait_pid(pid_t pid)
{
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
}

int moat_attach_start(const struct moat_attach *a, struct moat_attach_result *r, pid_t *child, void **stack)
{
	r->pid = 0;
	r->master = -1;
	r->stage = MOAT_OK;
	r->err = 0;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r->stage = MOAT_SOCKET;
		r->err = errno;
		return -1;
	}
	// The stack, with a guard page below it and the child's arguments at
	// its top.
	char *mem = mmap(NULL, JOIN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (mem == MAP_FAILED || mprotect(mem, 4096, PROT_NONE) < 0) {
		r->stage = MOAT_FORK;
		r->err = errno;
		if (mem != MAP_FAILED)
			munmap(mem, JOIN_STACK);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	struct join_args *ja = (struct join_args *)(mem + JOIN_STACK) - 1;
	*ja = (struct join_args){ a, sv[0], sv[1] };
	char *top = (char *)((uintptr_t)ja & ~(uintptr_t)15);

	// No Go signal handler may run in the children.
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = clone(join_entry, top, CLONE_VM | SIGCHLD, ja);
	int fork_err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid < 0) {
		munmap(mem, JOIN_STACK);
		close(sv[0]);
		r->stage = MOAT_FORK;
		r->err = fork_err;
		return -1;
	}
	*child = pid;
	*stack = mem;
	return sv[0];
}

void moat_attach_finish(int sock, pid_t child, void *stack, int pty, struct moat_attach_result *r)
{
	r->pid = 0;
	r->master = -1;
	r->stage = MOAT_OK;
	r->err = 0;

	// Read until every copy of the socket is gone: the first child exits
	// and the command closes it by exec (or dies).
	for (;;) {
		struct msg m;
		struct iovec iov = { &m, sizeof(m) };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		int fd = -1;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if (n != sizeof(m)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		switch (m.kind) {
		case MSG_PID:
			r->pid = m.val;
			break;
		case MSG_FAIL:
			if (r->stage == MOAT_OK) {
				r->stage = m.stage;
				r->err = m.val;
			}
			break;
		case MSG_MASTER:
			if (fd >= 0 && r->master < 0) {
				r->master = fd;
				fd = -1;
			}
			break;
		}
		if (fd >= 0)
			close(fd);
	}
	close(sock);
	wait_pid(child);
	munmap(stack, JOIN_STACK);
	if (r->stage == MOAT_OK && (r->pid <= 0 || (pty && r->master < 0))) {
		r->stage = MOAT_LOST; // a child died without saying why
		r->err = EIO;
	}
	if (r->stage != MOAT_OK) {
		if (r->pid > 0)
			wait_pid(r->pid);
		r->pid = 0;
		if (r->master >= 0)
			close(r->master);
		r->master = -1;
	}
}
