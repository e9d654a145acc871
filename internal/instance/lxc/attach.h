#ifndef MOAT_ATTACH_H
#define MOAT_ATTACH_H

#include <stdint.h>
#include <sys/types.h>
#include <linux/filter.h>

/* What one exec needs; every pointer is to C memory owned by the caller. */
struct moat_attach {
	int pidfd;   /* the container's init */
	int nsflags; /* CLONE_NEW* to join from it */
	char **cgroup_procs; /* cgroup.procs of init's cgroups, NULL terminated */
	int *cap_drop;
	int n_cap_drop;
	struct sock_filter *filter;
	unsigned short filter_len;
	char **argv; /* NULL terminated */
	char **envp; /* NULL terminated */
	const char *path; /* PATH to search argv[0] in */
	const char *cwd;
	uid_t uid;
	gid_t gid;
	int stdio[3]; /* ignored with pty */
	int pty;
	unsigned short rows, cols;
};

/* Steps of the attach, reported with the errno of the one that failed. */
enum moat_attach_stage {
	MOAT_OK = 0,
	MOAT_SOCKET,
	MOAT_FORK,
	MOAT_CGROUP,
	MOAT_SETNS,
	MOAT_CAPS,
	MOAT_SECCOMP,
	MOAT_IDS,
	MOAT_CWD,
	MOAT_PTMX,
	MOAT_NOT_PTMX,
	MOAT_PTY,
	MOAT_STDIO,
	MOAT_LOST,
};

struct moat_attach_result {
	int pid;    /* the command, a child of the caller; 0 if none */
	int master; /* the pty's master, or -1 */
	int stage;  /* MOAT_OK or the failed step */
	int err;    /* its errno */
};

/*
 * moat_attach_start starts the attaching child and returns the socket the
 * outcome arrives on (-1 and r set on failure). a and everything it points
 * to must stay valid until moat_attach_finish returns. Calls must not
 * overlap: a fork in between would keep the socket open in a foreign
 * child. moat_attach_finish then waits for the exec (or failure), reaps
 * the first child and frees its stack; it may run concurrently with other
 * calls.
 */
int moat_attach_start(const struct moat_attach *a, struct moat_attach_result *r, pid_t *child, void **stack);
void moat_attach_finish(int sock, pid_t child, void *stack, int pty, struct moat_attach_result *r);

#endif
