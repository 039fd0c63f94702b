// Records process.bpf.c sends to user space through the `events` ring buffer.
// Mirrored once in agentsight/actors/sources/process.py: keep the two in step.
// Every record starts with struct proc_header; `kind` says which record follows.
#ifndef ARGS_SIZE
#define ARGS_SIZE 2048      // argv bytes per exec (power of two)
#endif
#define ARG_MAX_LEN 256     // bytes of one argument
#define MAX_ARGS 32         // arguments read per exec
#define PATH_LEN 256        // exec filename / opened path
#define SOCKADDR_LEN 112    // enough for sockaddr_in6 (28) and sockaddr_un (110)

enum proc_kind {
    KIND_EXEC = 1,
    KIND_FORK = 2,
    KIND_EXIT = 3,
    KIND_OPEN = 4,
    KIND_CONNECT = 5,
};

// exec flags
#define EXEC_ARGS_TRUNCATED 1   // more arguments or bytes than fit
#define EXEC_ARGS_MISSING 2     // the execve entry was not seen
#define EXEC_FILENAME_TRUNCATED 4
// exit flags
#define EXIT_START_KNOWN 1      // duration_ns is valid
#define EXIT_CODE_KNOWN 2       // exit_group/exit was seen: exit_code is valid
#define EXIT_SIGNALED 4         // killed by `signal`
// open flags
#define OPEN_PATH_TRUNCATED 1

struct proc_header {
    u32 kind;
    u32 pid;        // tgid of the process the record is about
    u32 tid;        // the thread that did it
    u32 uid;
    u64 ts_ns;      // bpf_ktime_get_boot_ns()
    char comm[COMM_LEN];
};                  // 40 bytes

struct exec_event {
    struct proc_header h;
    u32 ppid;       // 0 when unknown
    u32 old_tid;    // thread that called execve
    u32 args_len;   // bytes used in args: NUL-separated arguments
    u16 argc;       // arguments in args
    u16 flags;
    char filename[PATH_LEN];
    char args[ARGS_SIZE];
};

struct fork_event {
    struct proc_header h;   // h.pid is the parent
    u32 child_pid;
    u32 pad;
};

struct exit_event {
    struct proc_header h;
    u32 ppid;
    u32 flags;
    s32 exit_code;
    s32 signal;
    u64 duration_ns;
};

struct open_event {
    struct proc_header h;
    s64 ret;        // fd or -errno
    s32 dfd;
    u32 open_flags;
    u32 mode;
    u32 flags;
    char path[PATH_LEN];
};

struct connect_event {
    struct proc_header h;
    s64 ret;        // 0 or -errno (-EINPROGRESS for non-blocking sockets)
    u32 fd;
    u32 addrlen;
    u8 addr[SOCKADDR_LEN];  // the raw struct sockaddr the caller passed
};
