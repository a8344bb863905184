// The sandbox init: the first code a task's process runs, inside its new
// user, mount, PID, IPC and UTS namespaces, before the Go runtime starts.
//
// The node's zygote (below) clones it for each task; argv[0]
// "custody-sandbox-init" also starts it directly as /proc/self/exe. It
// makes its user namespace and waits for the agent to write the id maps,
// makes the other namespaces, binds the zygote's prepared root (read-only:
// the system directories and a minimal /dev; "template") or builds one on an
// empty tmpfs, adds a fresh /proc for its PID namespace, a private /tmp and
// /dev/shm and the node's directories, pivots into it, detaches the old
// root, sets limits, drops to the task's user and execs the command.
// Nothing of the host outside those binds exists for the task.
//
// It runs as a constructor so that a sandboxed task costs one execve more
// than a plain one, not the start-up of the Go runtime. Any failure is
// written to fd 4 (closed on a successful exec) and ends the process with
// status 126.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#define GO_FD 3
#define STATUS_FD 4
#define READY_FD 5

static void fail(const char *what, const char *arg) {
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "sandbox: %s %s: %s", what, arg ? arg : "", strerror(errno));
	if (n > (int)sizeof buf) n = sizeof buf;
	if (n > 0) (void)!write(STATUS_FD, buf, n);
	_exit(126);
}

// join returns root + path in a static buffer slot.
static char *join(const char *root, const char *path) {
	size_t a = strlen(root), b = strlen(path);
	char *s = malloc(a + b + 2);
	if (!s) fail("out of memory", NULL);
	memcpy(s, root, a);
	if (path[0] != '/') s[a++] = '/';
	memcpy(s + a, path, b + 1);
	return s;
}

static void mkdirs(const char *path, mode_t mode) {
	char *p = strdup(path);
	if (!p) fail("out of memory", NULL);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/') continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST) fail("mkdir", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST) fail("mkdir", p);
	free(p);
}

// lockedFlags returns the mount flags of path that an unprivileged remount
// must keep (the kernel refuses to clear them).
static unsigned long lockedFlags(const char *path) {
	struct statvfs st;
	if (statvfs(path, &st) < 0) fail("statvfs", path);
	unsigned long f = 0;
	if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (st.f_flag & ST_NODEV) f |= MS_NODEV;
	if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	if (st.f_flag & ST_RDONLY) f |= MS_RDONLY;
	if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
	if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
	if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
	return f;
}

// bind shows src at the same path under root. src may be
// "/proc/self/fd/N" for a directory the agent opened (its parents need not
// be searchable by the task's users); dstpath is then where it goes.
static void bindAt(const char *root, const char *src, const char *dstpath, int readonly, int devices) {
	struct stat st;
	if (stat(src, &st) < 0) fail("stat", dstpath);
	char *dst = join(root, dstpath);
	if (S_ISDIR(st.st_mode)) {
		mkdirs(dst, 0755);
	} else {
		char *slash = strrchr(dst, '/');
		*slash = 0;
		mkdirs(dst, 0755);
		*slash = '/';
		int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0) fail("create", dst);
		close(fd);
	}
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind", dstpath);
	unsigned long f = lockedFlags(dst) | MS_NOSUID;
	if (!devices) f |= MS_NODEV;
	if (readonly) f |= MS_RDONLY;
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | f, NULL) < 0) fail("remount", dstpath);
	free(dst);
}

static unsigned long long number(const char *s, const char *what) {
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || end == s) { errno = EINVAL; fail("bad number for", what); }
	return v;
}

static void bindDir(const char *root, const char *src, int readonly) { bindAt(root, src, src, readonly, 0); }

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

// bindFD handles "N:DST": N is a detached copy of a mount tree the agent
// made with open_tree (so the directory's parents need not be searchable
// by the task's users); it is attached at DST.
static int bindFD(const char *root, char *arg, int readonly) {
	char *colon = strchr(arg, ':');
	if (!colon) { errno = EINVAL; fail("bad bind", arg); }
	*colon = 0;
	int fd = (int)number(arg, "descriptor");
	*colon = ':';
	char *dst = join(root, colon + 1);
	mkdirs(dst, 0755);
	if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail("attach", colon + 1);
	unsigned long f = lockedFlags(dst) | MS_NOSUID | MS_NODEV;
	if (readonly) f |= MS_RDONLY;
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | f, NULL) < 0) fail("remount", colon + 1);
	free(dst);
	return fd;
}


// showSystem shows one system directory read-only ("ro=DIR") or the
// symbolic link that stands for it ("link=PATH:TARGET") under root.
static void showSystem(const char *root, char *a) {
	if (strncmp(a, "ro=", 3) == 0) bindDir(root, a + 3, 1);
	else if (strncmp(a, "link=", 5) == 0) {
		char *eq = strchr(a + 5, ':');
		if (!eq) { errno = EINVAL; fail("bad link", a); }
		*eq = 0;
		char *dst = join(root, a + 5);
		if (symlink(eq + 1, dst) < 0) fail("symlink", dst);
		free(dst);
		*eq = ':';
	}
}

// buildRoot builds a task's root on an empty tmpfs at root: a minimal
// /dev, /dev/shm, a /proc of the caller's PID namespace and a private /tmp
// of tmpsize bytes (the system directories come after, see run). For the
// zygote's prepared root (tmpsize NULL) /dev/shm, /proc and /tmp are left
// empty: each task mounts its own there.
static void buildRoot(const char *root, const char *tmpsize) {
	if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0) fail("mount root tmpfs on", root);

	// A minimal /dev.
	char *dev = join(root, "/dev");
	mkdirs(dev, 0755);
	if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0) fail("mount /dev", NULL);
	static const char *nodes[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"};
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		if (access(nodes[i], F_OK) == 0) bindAt(root, nodes[i], nodes[i], 0, 1);
	}
	static const char *links[][2] = {{"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		char *dst = join(root, links[i][0]);
		if (symlink(links[i][1], dst) < 0) fail("symlink", dst);
		free(dst);
	}
	char *shm = join(root, "/dev/shm");
	mkdirs(shm, 01777);
	char *proc = join(root, "/proc");
	mkdirs(proc, 0555);
	char *tmp = join(root, "/tmp");
	mkdirs(tmp, 01777);
	if (!tmpsize) return;
	if (mount("tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m") < 0) fail("mount /dev/shm", NULL);
	// /proc of the task's own PID namespace, and a private /tmp.
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /proc", NULL);
	char opts[64];
	snprintf(opts, sizeof opts, "mode=1777,size=%s", tmpsize);
	if (mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) fail("mount /tmp", NULL);
}

static void run(int argc, char **argv, char **envp) {
	const char *root = NULL, *cwd = "/", *hostname = NULL, *tmpsize = "67108864";
	unsigned long long uid = 0, gid = 0, fsize = RLIM_INFINITY, nproc = RLIM_INFINITY;
	int cmd = -1, template = 0;

	if (fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC) < 0) _exit(126);
	if (fcntl(READY_FD, F_SETFD, FD_CLOEXEC) < 0) _exit(126);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) { cmd = i + 1; break; }
		if (strncmp(argv[i], "root=", 5) == 0) root = argv[i] + 5;
		else if (strncmp(argv[i], "cwd=", 4) == 0) cwd = argv[i] + 4;
		else if (strncmp(argv[i], "hostname=", 9) == 0) hostname = argv[i] + 9;
		else if (strncmp(argv[i], "tmp=", 4) == 0) tmpsize = argv[i] + 4;
		else if (strncmp(argv[i], "uid=", 4) == 0) uid = number(argv[i] + 4, "uid");
		else if (strncmp(argv[i], "gid=", 4) == 0) gid = number(argv[i] + 4, "gid");
		else if (strncmp(argv[i], "fsize=", 6) == 0) fsize = number(argv[i] + 6, "fsize");
		else if (strncmp(argv[i], "nproc=", 6) == 0) nproc = number(argv[i] + 6, "nproc");
		else if (strcmp(argv[i], "template") == 0) template = 1;
	}
	if (!root || cmd < 0 || cmd >= argc) { errno = EINVAL; fail("usage", "root=DIR ... -- COMMAND"); }
	number(tmpsize, "tmp");

	// The task's processes go first when the node runs out of memory, not
	// the agent's (raising one's own score needs no privilege).
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom < 0 || write(oom, "500", 3) != 3) fail("oom_score_adj", NULL);
	close(oom);

	// A user namespace; the agent writes its id maps (root of it is the
	// task's admin user), then says go.
	if (unshare(CLONE_NEWUSER) < 0) fail("unshare", "user namespace");
	if (write(READY_FD, "u", 1) != 1) fail("signal the agent", NULL);
	close(READY_FD);
	char go;
	if (read(GO_FD, &go, 1) != 1) _exit(126);
	if (setresgid(0, 0, 0) < 0) fail("become root of the user namespace", "gid");
	if (setresuid(0, 0, 0) < 0) fail("become root of the user namespace", "uid");
	if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) < 0) fail("unshare", "mount, PID, IPC and UTS namespaces");
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0) fail("pipe", NULL);
	pid_t pid = fork();
	if (pid < 0) fail("fork", NULL);
	if (pid > 0) {
		// The init: wait for PID 1 and end as it did.
		close(STATUS_FD);
		close(alive[0]);
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		for (int fd = 0; fd < 3 && devnull >= 0; fd++) dup2(devnull, fd);
		close(GO_FD);
		for (int fd = READY_FD + 1; fd < 64; fd++) {
			if (fd != alive[1]) close(fd);
		}
		int st;
		while (waitpid(pid, &st, 0) < 0) {
			if (errno != EINTR) _exit(126);
		}
		if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
		int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	// PID 1 of the task: it dies with the init.
	close(alive[1]);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", NULL);
	struct pollfd parent = {alive[0], POLLIN, 0};
	if (poll(&parent, 1, 0) > 0) _exit(126);

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("make / private", NULL);
	if (template) {
		// The zygote's prepared tree (see buildTemplate) is at root, locked
		// in this namespace: one recursive bind makes a copy of this
		// namespace's own to pivot into, its system directories and /dev
		// still locked and read-only. /dev/shm, /proc and /tmp are the
		// task's own.
		if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind the prepared root", root);
		char *shm = join(root, "/dev/shm");
		if (mount("tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m") < 0) fail("mount /dev/shm", NULL);
		char *proc = join(root, "/proc");
		if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /proc", NULL);
		char *tmp = join(root, "/tmp");
		char opts[64];
		snprintf(opts, sizeof opts, "mode=1777,size=%s", tmpsize);
		if (mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) fail("mount /tmp", NULL);
	} else {
		buildRoot(root, tmpsize);
	}

	// What to show (after /tmp, which may hold the node's root): read-only
	// system directories (or the symlinks that stand for them) unless the
	// prepared root has them, and read-write directories of the node.
	for (int i = 1; i < cmd - 1; i++) {
		char *a = argv[i];
		if (strncmp(a, "rofd=", 5) == 0) close(bindFD(root, a + 5, 1));
		else if (strncmp(a, "rwfd=", 5) == 0) close(bindFD(root, a + 5, 0));
		else if (!template) showSystem(root, a);
	}

	// Enter the new root and detach the old one: nothing else is reachable.
	if (chdir(root) < 0) fail("chdir", root);
	if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root", root);
	if (umount2(".", MNT_DETACH) < 0) fail("detach the old root", NULL);
	if (chdir("/") < 0) fail("chdir", "/");
	if (template) {
		// The prepared root is read-only already (and locked so: the copy
		// came from the zygote's namespace).
		struct statvfs st;
		if (statvfs("/", &st) < 0) fail("statvfs", "/");
		if (!(st.f_flag & ST_RDONLY)) { errno = EPERM; fail("the prepared root is writable", NULL); }
	} else if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) fail("remount / read-only", NULL);

	if (hostname && sethostname(hostname, strlen(hostname)) < 0) fail("sethostname", hostname);
	struct rlimit rl = {fsize, fsize};
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0) fail("setrlimit", "RLIMIT_FSIZE");
	struct rlimit core = {0, 0};
	if (setrlimit(RLIMIT_CORE, &core) < 0) fail("setrlimit", "RLIMIT_CORE");
	// The task's user may not have more processes than the node's budget
	// (the node's control group keeps a reserve for the agent above it).
	struct rlimit np = {nproc, nproc};
	if (setrlimit(RLIMIT_NPROC, &np) < 0) fail("setrlimit", "RLIMIT_NPROC");

	// Drop the agent's supplementary groups (they would still count on the
	// host) and become the task's user.
	if (setgroups(0, NULL) < 0) fail("setgroups", NULL);
	if (setresgid(gid, gid, gid) < 0) fail("setgid", NULL);
	if (setresuid(uid, uid, uid) < 0) fail("setuid", NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("no_new_privs", NULL);
	// A change of user clears the parent-death signal: set it again, then
	// make sure the init did not die in between.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("pdeathsig", NULL);
	if (poll(&parent, 1, 0) > 0) _exit(126);
	close(alive[0]);
	close(GO_FD);

	if (chdir(cwd) < 0) fail("chdir", cwd);
	execve(argv[cmd], &argv[cmd], envp);
	fail("exec", argv[cmd]);
}

// The zygote: started once per node as /proc/self/exe with argv[0]
// "custody-sandbox-zygote" and the agent's end of a stream socket as fd 3,
// it never starts the Go runtime. For each request it clones a child that
// runs the init above, so a task costs a fork of this small process rather
// than an execve of the custody binary (its loading, relocation and
// unmapping). The child is the agent's own child (CLONE_PARENT): the agent
// reaps it and sees how it ended, exactly as if it had started it itself.
//
// A request is a header (struct zreq) carrying the request's descriptors
// (SCM_RIGHTS: the init's descriptors 0..nfiles-1 in order, then, if
// cgroup is set, the task's control group directory), then a body of
// argc + envc NUL-terminated strings. The answer is the child's pid (int32),
// or minus an errno.

#define ZYGOTE_FD 3
#define ZMAGIC 0x637a7931u /* "czy1" */
#define ZMAXFDS 64
#define ZMAXBODY (4u << 20)

struct zreq {
	unsigned int magic, nfiles, argc, envc, body;
	int cgroup; /* 1: the last descriptor is the task's control group */
};

struct clone_args_v2 {
	unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static int readFull(int fd, char *p, size_t n) {
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void zchild(int zsock, int *fds, int nfiles, char *body, struct zreq *rq, pid_t agent) {
	// The init's descriptors go to 0..nfiles-1, by way of high numbers so
	// that none is overwritten before it is moved.
	int hi[ZMAXFDS];
	for (int i = 0; i < nfiles; i++) {
		hi[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 512);
		if (hi[i] < 0) _exit(126);
	}
	for (int i = 0; i < nfiles; i++) {
		if (dup2(hi[i], i) < 0) _exit(126);
		close(hi[i]);
	}
	close(zsock);
	if (setpgid(0, 0) < 0) _exit(126);
	// Die with the agent, and make sure it did not die already.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) _exit(126);
	if (getppid() != agent) _exit(126);
	char **argv = calloc(rq->argc + 1, sizeof *argv), **envp = calloc(rq->envc + 1, sizeof *envp);
	if (!argv || !envp) _exit(126);
	char *s = body;
	for (unsigned i = 0; i < rq->argc; i++, s += strlen(s) + 1) argv[i] = s;
	for (unsigned i = 0; i < rq->envc; i++, s += strlen(s) + 1) envp[i] = s;
	run((int)rq->argc, argv, envp);
	_exit(126);
}

// buildTemplate prepares, in a mount namespace of the zygote's own, the
// part of every task's root that is the same for all: the root tmpfs at
// "root=DIR" with /dev and the system directories ("ro=", "link=") and the
// directories the node's binds go on ("dir="), then makes it read-only.
// Each task's init copies it with its namespace and binds that copy once
// (see run). A failure ends the zygote with status 1, its reason on fd 2.
static void buildTemplate(int argc, char **argv) {
	const char *root = NULL;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "root=", 5) == 0) root = argv[i] + 5;
	}
	if (!root) { errno = EINVAL; fail("usage", "custody-sandbox-zygote root=DIR ..."); }
	if (unshare(CLONE_NEWNS) < 0) fail("unshare", "mount namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("make / private", NULL);
	buildRoot(root, NULL);
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "dir=", 4) == 0) {
			char *d = join(root, argv[i] + 4);
			mkdirs(d, 0755);
			free(d);
		} else {
			showSystem(root, argv[i]);
		}
	}
	char *dev = join(root, "/dev");
	if (mount(NULL, dev, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0) fail("remount read-only", dev);
	free(dev);
	if (mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) fail("remount read-only", root);
}

static void zygote(int argc, char **argv) {
	pid_t agent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != agent) _exit(1);
	buildTemplate(argc, argv);
	close(STATUS_FD);
	// Ready: the agent waits for this byte before its first request.
	if (write(ZYGOTE_FD, "z", 1) != 1) _exit(1);
	int zsock = fcntl(ZYGOTE_FD, F_DUPFD_CLOEXEC, 256);
	if (zsock < 0) _exit(1);
	close(ZYGOTE_FD);
	for (;;) {
		struct zreq rq;
		char cbuf[CMSG_SPACE(ZMAXFDS * sizeof(int))];
		struct iovec iov = {&rq, sizeof rq};
		struct msghdr mh = {0};
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof cbuf;
		ssize_t n;
		do n = recvmsg(zsock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL); while (n < 0 && errno == EINTR);
		if (n <= 0) _exit(0); /* the agent closed its end */
		int fds[ZMAXFDS], nfds = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k && nfds < ZMAXFDS; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		int answer = -EINVAL;
		char *body = NULL;
		if ((size_t)n != sizeof rq || rq.magic != ZMAGIC || (mh.msg_flags & MSG_CTRUNC) || rq.body > ZMAXBODY ||
		    (int)rq.nfiles + (rq.cgroup ? 1 : 0) != nfds || rq.nfiles < 6 || rq.argc < 2) {
			/* a malformed request: the agent and this zygote disagree; stop */
			_exit(1);
		}
		body = malloc(rq.body + 1);
		if (!body || readFull(zsock, body, rq.body) < 0) _exit(1);
		body[rq.body] = 0;
		// The body must hold argc + envc strings.
		unsigned strings = 0;
		for (unsigned i = 0; i < rq.body; i++) strings += body[i] == 0;
		if (strings < rq.argc + rq.envc) _exit(1);
		struct clone_args_v2 ca;
		memset(&ca, 0, sizeof ca);
		ca.flags = CLONE_PARENT;
		ca.exit_signal = 0; /* CLONE_PARENT: the signal is the one this zygote was started with */
		if (rq.cgroup) {
			ca.flags |= CLONE_INTO_CGROUP;
			ca.cgroup = (unsigned long long)fds[nfds - 1];
		}
		long pid = syscall(SYS_clone3, &ca, sizeof ca);
		if (pid == 0) zchild(zsock, fds, (int)rq.nfiles, body, &rq, agent);
		answer = pid < 0 ? -errno : (int)pid;
		for (int i = 0; i < nfds; i++) close(fds[i]);
		free(body);
		const char *p = (const char *)&answer;
		size_t left = sizeof answer;
		while (left > 0) {
			ssize_t w = write(zsock, p, left);
			if (w < 0 && errno == EINTR) continue;
			if (w <= 0) _exit(0);
			p += w;
			left -= (size_t)w;
		}
	}
}

__attribute__((constructor)) static void custody_sandbox_init(int argc, char **argv, char **envp) {
	if (argc > 0 && argv[0] && strcmp(argv[0], "custody-sandbox-init") == 0) run(argc, argv, envp);
	if (argc > 0 && argv[0] && strcmp(argv[0], "custody-sandbox-zygote") == 0) zygote(argc, argv);
}
