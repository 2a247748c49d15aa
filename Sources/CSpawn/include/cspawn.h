#ifndef CSPAWN_H
#define CSPAWN_H

#include <sys/types.h>

/// Where a standard stream of the child goes.
typedef enum {
    CSPAWN_OUTPUT_INHERIT = 0,
    CSPAWN_OUTPUT_NULL = 1,
    /// Appended to `path`, created with mode 0640 when missing.
    CSPAWN_OUTPUT_FILE = 2,
} cspawn_output_mode;

typedef struct {
    cspawn_output_mode mode;
    const char *path;
} cspawn_output;

/// The limits a supervisor sets (glibc's RLIMIT_* are macros Swift partly misses).
typedef enum {
    CSPAWN_LIMIT_ADDRESS_SPACE = 0,  // RLIMIT_AS
    CSPAWN_LIMIT_PROCESSES = 1,      // RLIMIT_NPROC
    CSPAWN_LIMIT_OPEN_FILES = 2,     // RLIMIT_NOFILE
    CSPAWN_LIMIT_CPU_SECONDS = 3,    // RLIMIT_CPU
} cspawn_limit_resource;

/// One resource limit set in the child before exec.
typedef struct {
    cspawn_limit_resource resource;
    unsigned long long soft;
    unsigned long long hard;
} cspawn_limit;

typedef struct {
    /// Absolute path of the program.
    const char *path;
    /// NULL-terminated, argv[0] included.
    char *const *argv;
    /// NULL-terminated "KEY=value" strings; the child gets exactly these.
    char *const *envp;
    /// NULL keeps the parent's working directory.
    const char *working_directory;
    cspawn_output out;
    cspawn_output err;
    /// Non-zero: the child leads a new process group (pgid = pid).
    int new_process_group;
    /// Signal delivered to the child when the spawning thread exits; 0 for none.
    int parent_death_signal;
    const cspawn_limit *limits;
    int limit_count;
    /// NULL-terminated paths of `cgroup.procs` files the child writes its own pid into
    /// before exec, so that it is confined before it can run (or fork) anything.
    char *const *cgroup_procs;
    /// Non-zero: switch to `gid` (no supplementary groups) and `uid` before exec.
    int change_credentials;
    uid_t uid;
    gid_t gid;
    /// Non-zero: PR_SET_NO_NEW_PRIVS, so no setuid binary can raise the child's privileges.
    int no_new_privileges;
} cspawn_request;

/// Which step failed, so that the caller can say more than the errno.
typedef enum {
    CSPAWN_STAGE_NONE = 0,
    CSPAWN_STAGE_SETUP = 1,       // in the parent: pipe, open, fork
    CSPAWN_STAGE_OPEN_OUTPUT = 2, // in the parent: opening an output file
    CSPAWN_STAGE_PARENT_DIED = 3,
    CSPAWN_STAGE_PROCESS_GROUP = 4,
    CSPAWN_STAGE_REDIRECT = 5,
    CSPAWN_STAGE_CHDIR = 6,
    CSPAWN_STAGE_RLIMIT = 7,
    CSPAWN_STAGE_EXEC = 8,
    CSPAWN_STAGE_CGROUP = 9,
    CSPAWN_STAGE_CREDENTIALS = 10,
    CSPAWN_STAGE_NO_NEW_PRIVILEGES = 11,
} cspawn_stage;

typedef struct {
    pid_t pid;
    /// 0 on success, else the errno of the failing step.
    int error;
    cspawn_stage stage;
} cspawn_result;

/// Starts a program with an empty signal mask, default signal dispositions, stdin from
/// /dev/null and the given outputs, directory, environment, process group, parent-death
/// signal and limits. Returns only after the child has exec'd (or failed to), so that a
/// failure carries the child's real errno. A child that failed is already reaped.
cspawn_result cspawn(const cspawn_request *request);

/// "KILL" for SIGKILL; NULL for an unknown number.
const char *cspawn_signal_abbreviation(int signal);

#endif
