#include "cspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <grp.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/// What the child writes to the parent when a step before exec fails.
typedef struct {
    int stage;
    int error;
} failure;

/// Only async-signal-safe calls from here on: the parent is multi-threaded, and the
/// child of fork() may find any lock (malloc's included) held by a thread that is gone.
static void fail_in_child(int pipe_fd, int stage) {
    failure f = {stage, errno};
    ssize_t ignored = write(pipe_fd, &f, sizeof f);
    (void)ignored;
    _exit(127);
}

/// Makes `fd` the child's `target` descriptor without the close-on-exec flag.
static int install(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

static int rlimit_resource(cspawn_limit_resource resource) {
    switch (resource) {
    case CSPAWN_LIMIT_ADDRESS_SPACE: return RLIMIT_AS;
    case CSPAWN_LIMIT_PROCESSES: return RLIMIT_NPROC;
    case CSPAWN_LIMIT_OPEN_FILES: return RLIMIT_NOFILE;
    case CSPAWN_LIMIT_CPU_SECONDS: return RLIMIT_CPU;
    }
    return -1;  // setrlimit then fails with EINVAL
}

static void run_child(const cspawn_request *r, pid_t parent, int pipe_fd, int in_fd, int out_fd, int err_fd) {
    if (r->parent_death_signal != 0) {
        if (prctl(PR_SET_PDEATHSIG, r->parent_death_signal, 0, 0, 0) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_PARENT_DIED);
        // The parent may have died between fork and prctl; then nobody would signal us.
        if (getppid() != parent) {
            errno = ESRCH;
            fail_in_child(pipe_fd, CSPAWN_STAGE_PARENT_DIED);
        }
    }
    if (r->new_process_group && setpgid(0, 0) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_PROCESS_GROUP);
    if (install(in_fd, STDIN_FILENO) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_REDIRECT);
    if (out_fd >= 0 && install(out_fd, STDOUT_FILENO) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_REDIRECT);
    if (err_fd >= 0 && install(err_fd, STDERR_FILENO) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_REDIRECT);
    // Descriptors that other threads opened without O_CLOEXEC must not leak into the
    // child (a listening socket held by a service would keep its port busy).
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_REDIRECT);
    if (r->working_directory != NULL && chdir(r->working_directory) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_CHDIR);
    for (int i = 0; i < r->limit_count; i++) {
        struct rlimit limit = {(rlim_t)r->limits[i].soft, (rlim_t)r->limits[i].hard};
        if (setrlimit(rlimit_resource(r->limits[i].resource), &limit) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_RLIMIT);
    }
    // Into the cgroups while still privileged enough to write cgroup.procs ("0" is "me").
    for (char *const *procs = r->cgroup_procs; procs != NULL && *procs != NULL; procs++) {
        int fd = open(*procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) fail_in_child(pipe_fd, CSPAWN_STAGE_CGROUP);
        if (write(fd, "0", 1) != 1) fail_in_child(pipe_fd, CSPAWN_STAGE_CGROUP);
        close(fd);
    }
    if (r->change_credentials) {
        if (setgroups(0, NULL) != 0 || setgid(r->gid) != 0 || setuid(r->uid) != 0)
            fail_in_child(pipe_fd, CSPAWN_STAGE_CREDENTIALS);
        // A change of credentials clears the parent-death signal: set it again.
        if (r->parent_death_signal != 0) {
            if (prctl(PR_SET_PDEATHSIG, r->parent_death_signal, 0, 0, 0) != 0) fail_in_child(pipe_fd, CSPAWN_STAGE_PARENT_DIED);
            if (getppid() != parent) {
                errno = ESRCH;
                fail_in_child(pipe_fd, CSPAWN_STAGE_PARENT_DIED);
            }
        }
    }
    if (r->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_in_child(pipe_fd, CSPAWN_STAGE_NO_NEW_PRIVILEGES);
    // Dispositions first, mask second: a signal pending now must not run a handler
    // of the parent's runtime in the child.
    // The raw system call, because glibc's sigaction refuses the signals it reserves
    // for itself (32, 33), and an ignored disposition of those would survive exec too.
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } default_action = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &default_action, NULL, sizeof default_action.mask);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(r->path, r->argv, r->envp);
    fail_in_child(pipe_fd, CSPAWN_STAGE_EXEC);
}

/// Opens where an output goes; -1 with errno on failure, -2 for "inherit".
static int open_output(const cspawn_output *out) {
    switch (out->mode) {
    case CSPAWN_OUTPUT_NULL: return open("/dev/null", O_WRONLY | O_CLOEXEC);
    case CSPAWN_OUTPUT_FILE: return open(out->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    default: return -2;
    }
}

static void close_if_open(int fd) {
    if (fd >= 0) close(fd);
}

cspawn_result cspawn(const cspawn_request *r) {
    cspawn_result result = {-1, 0, CSPAWN_STAGE_NONE};
    int in_fd = -1, out_fd = -2, err_fd = -2;
    int pipe_fds[2] = {-1, -1};

    in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_SETUP;
        goto done;
    }
    out_fd = open_output(&r->out);
    if (out_fd == -1) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_OPEN_OUTPUT;
        goto done;
    }
    err_fd = open_output(&r->err);
    if (err_fd == -1) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_OPEN_OUTPUT;
        goto done;
    }
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_SETUP;
        goto done;
    }

    // Block every signal across fork so that no handler of ours runs in the child
    // before it has reset the dispositions; the parent's own mask comes back after.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(pipe_fds[0]);
        run_child(r, parent, pipe_fds[1], in_fd, out_fd, err_fd);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(pipe_fds[1]);
    if (pid < 0) {
        result.error = fork_errno;
        result.stage = CSPAWN_STAGE_SETUP;
        goto done;
    }
    if (r->new_process_group) {
        // Also from this side, so that a signal to the group right after return cannot
        // miss; fails with EACCES once the child has exec'd, which is then moot.
        setpgid(pid, pid);
    }

    failure f;
    ssize_t n;
    do {
        n = read(pipe_fds[0], &f, sizeof f);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof f) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        result.error = f.error;
        result.stage = f.stage;
    } else {
        result.pid = pid;  // EOF: the pipe closed on a successful exec
    }

done:
    close_if_open(pipe_fds[0]);
    close_if_open(in_fd);
    close_if_open(out_fd);
    close_if_open(err_fd);
    return result;
}

const char *cspawn_signal_abbreviation(int signal) { return sigabbrev_np(signal); }
