// Process lifecycle, file opens and connects, from tracepoints only.
//
// Nothing here reads a kernel struct by offset (bcc compiles against headers that
// may not match the running kernel): ppid comes from sched_process_fork, exit
// codes from the exit_group/exit syscalls, fatal signals from signal_deliver and
// signal_generate, argv from the execve arguments in user memory.
//
// Macros set by agentsight/actors/sources/process.py (see filter.h for the
// FILTER_* ones):
//   SEED_BY_COMM     mode 2: a name match at exec adds the process to `traced`
//                    (its descendants follow) instead of filtering each event by name
//   TRACE_FILES      attach the openat/connect tracepoints (mode 0 and 2)
//   HAVE_SYS_OPEN    the kernel has the legacy open(2) tracepoint
//   HAVE_GROUP_DEAD  sched_process_exit has the group_dead field
//   MIN_DURATION_NS  report exits of processes that lived at least this long
//   RING_PAGES       ring buffer size in pages
#include "filter.h"
#include "process.h"

#ifndef SEED_BY_COMM
#define SEED_BY_COMM 0
#endif
#ifndef TRACE_FILES
#define TRACE_FILES 1
#endif
#ifndef MIN_DURATION_NS
#define MIN_DURATION_NS 0
#endif
#ifndef RING_PAGES
#define RING_PAGES 256
#endif

#define CLONE_THREAD_FLAG 0x00010000
#define SIGKILL_NR 9
#define AF_UNIX_NR 1
#define AF_INET_NR 2
#define AF_INET6_NR 10

// What the kernel side knows about a live process (seeded from /proc for the
// processes that existed before the program was loaded).
struct proc_info {
    u64 start_ns;   // boot ns, 0 when unknown
    u32 ppid;
    u32 pad;
};

struct open_args {
    const char *path;
    s32 dfd;
    u32 open_flags;
    u32 mode;
    u32 pad;
};

struct connect_args {
    const void *addr;
    u32 fd;
    u32 addrlen;
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);                 // ring buffer reserve failures
BPF_TABLE("lru_hash", u32, struct proc_info, info, 65536);
BPF_TABLE("lru_hash", u32, s32, codes, 16384);  // tgid -> exit code
BPF_TABLE("lru_hash", u32, s32, killsig, 16384); // tgid -> fatal signal
BPF_TABLE("lru_hash", u32, s32, gensig, 16384); // target pid -> last fatal-by-default signal sent
BPF_TABLE("lru_hash", u32, u8, cloning_thread, 4096);
BPF_HASH(execs, u32, struct exec_event, 256);   // tid -> argv read at execve entry
BPF_PERCPU_ARRAY(exec_scratch, struct exec_event, 1);
#if TRACE_FILES
BPF_HASH(open_pending, u32, struct open_args, 4096);
BPF_HASH(connect_pending, u32, struct connect_args, 1024);
#endif

static __always_inline void count_lost(void)
{
    u32 zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline void fill_header(struct proc_header *h, u32 kind)
{
    u64 id = bpf_get_current_pid_tgid();
    h->kind = kind;
    h->pid = id >> 32;
    h->tid = (u32)id;
    h->uid = (u32)bpf_get_current_uid_gid();
    h->ts_ns = bpf_ktime_get_boot_ns();
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

// The whole filter for an event of process tgid (by name only outside mode 2).
static __always_inline int current_wanted(u32 tgid)
{
    if (!pid_wanted(tgid))
        return 0;
#if !SEED_BY_COMM
    if (!name_wanted(tgid))
        return 0;
#endif
    return 1;
}

// Signals whose default action ends the process (everything but the ignored
// SIGCHLD/SIGURG/SIGWINCH and the job-control ones).
static __always_inline int fatal_by_default(int sig)
{
    if (sig < 1 || sig > 64)
        return 0;
    if (sig >= 17 && sig <= 23)
        return 0;
    return sig != 28;
}

// ---- exec ------------------------------------------------------------------

static __always_inline void read_args(struct exec_event *e, const char *const *argv)
{
    u32 off = 0;
    e->argc = 0;
    e->flags = 0;
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
            goto done;
        if (off > ARGS_SIZE - ARG_MAX_LEN) {
            e->flags |= EXEC_ARGS_TRUNCATED;
            goto done;
        }
        long n = bpf_probe_read_user_str(&e->args[off], ARG_MAX_LEN, arg);
        if (n <= 0)
            goto done;
        if (n >= ARG_MAX_LEN)
            e->flags |= EXEC_ARGS_TRUNCATED;
        off += n & (ARG_MAX_LEN * 2 - 1);
        e->argc++;
    }
    {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]);
        if (more)
            e->flags |= EXEC_ARGS_TRUNCATED;
    }
done:
    e->args_len = off;
}

static __always_inline int stash_exec(const char *const *argv)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    // The comm after exec is not known yet: only the pid/tree part filters here.
    if (!pid_wanted(id >> 32))
        return 0;
    u32 zero = 0;
    struct exec_event *e = exec_scratch.lookup(&zero);
    if (!e)
        return 0;
    read_args(e, argv);
    execs.update(&tid, e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return stash_exec(args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return stash_exec(args->argv);
}

static __always_inline int exec_failed(long ret)
{
    if (ret < 0) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        execs.delete(&tid);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return exec_failed(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    return exec_failed(args->ret);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 old_tid = args->old_pid;
    struct exec_event *e = execs.lookup(&old_tid);
    int stashed = e != NULL;
    if (!e) {
        u32 zero = 0;
        e = exec_scratch.lookup(&zero);
        if (!e)
            return 0;
        e->argc = 0;
        e->args_len = 0;
        e->flags = EXEC_ARGS_MISSING;
    }
    fill_header(&e->h, KIND_EXEC);
    int named_now = filter_exec(tgid);
#if SEED_BY_COMM
    if (named_now) {
        u8 one = 1;
        traced.update(&tgid, &one);
    }
#endif
    if (current_wanted(tgid)) {
        struct proc_info *pi = info.lookup(&tgid);
        e->ppid = pi ? pi->ppid : 0;
        e->old_tid = old_tid;
        u32 loc = args->data_loc_filename & 0xFFFF;
        long n = bpf_probe_read_kernel_str(e->filename, PATH_LEN, (void *)args + loc);
        if (n >= PATH_LEN)
            e->flags |= EXEC_FILENAME_TRUNCATED;
        u32 len = e->args_len;
        if (len > ARGS_SIZE)
            len = ARGS_SIZE;
        if (events.ringbuf_output(e, offsetof(struct exec_event, args) + len, 0))
            count_lost();
    }
    if (stashed)
        execs.delete(&old_tid);
    return 0;
}

// ---- fork ------------------------------------------------------------------

static __always_inline int note_clone(u64 flags)
{
    if (flags & CLONE_THREAD_FLAG) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        u8 one = 1;
        cloning_thread.update(&tid, &one);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone)
{
    return note_clone(args->clone_flags);
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone3)
{
    u64 flags = 0;  // struct clone_args starts with the u64 flags (uapi, stable)
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs);
    return note_clone(flags);
}

static __always_inline int clone_done(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    cloning_thread.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone)
{
    return clone_done();
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone3)
{
    return clone_done();
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (cloning_thread.lookup(&tid))
        return 0;  // a new thread of the same process
    u32 child = args->child_pid;
    struct proc_info pi = {.start_ns = bpf_ktime_get_boot_ns(), .ppid = tgid};
    info.update(&child, &pi);
    filter_fork(tgid, child);
    if (!current_wanted(tgid))
        return 0;
    struct fork_event *e = events.ringbuf_reserve(sizeof(struct fork_event));
    if (!e) {
        count_lost();
        return 0;
    }
    fill_header(&e->h, KIND_FORK);
    e->child_pid = child;
    e->pad = 0;
    events.ringbuf_submit(e, 0);
    return 0;
}

// ---- exit ------------------------------------------------------------------

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    s32 code = args->error_code & 0xff;
    codes.update(&tgid, &code);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    // The leader's own exit code is what wait() reports when nobody calls exit_group.
    if (tgid == (u32)id) {
        s32 code = args->error_code & 0xff;
        codes.insert(&tgid, &code);
    }
    return 0;
}

TRACEPOINT_PROBE(signal, signal_generate)
{
    // result 0 = TRACE_SIGNAL_DELIVERED (queued to the target)
    if (args->result == 0 && fatal_by_default(args->sig)) {
        u32 pid = args->pid;
        s32 sig = args->sig;
        gensig.update(&pid, &sig);
    }
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    int sig = args->sig;
    if (args->sa_handler != 0) {  // caught or ignored: not fatal
        gensig.delete(&tgid);
        return 0;
    }
    if (!fatal_by_default(sig))
        return 0;
    s32 cause = sig;
    if (sig == SIGKILL_NR) {
        // A fatal signal with the default action is turned into a group-wide
        // SIGKILL before delivery: the signal that was sent is the cause.
        s32 *sent = gensig.lookup(&tgid);
        if (!sent)
            sent = gensig.lookup(&tid);
        if (sent)
            cause = *sent;
    }
    killsig.insert(&tgid, &cause);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
#if HAVE_GROUP_DEAD
    int group_dead = args->group_dead;
#else
    int group_dead = tgid == tid;
#endif
    if (!group_dead) {
        gensig.delete(&tid);
        filter_exit(tgid, tid, 0);
        return 0;
    }
    if (current_wanted(tgid)) {
        u64 now = bpf_ktime_get_boot_ns();
        struct proc_info *pi = info.lookup(&tgid);
        u64 start = pi ? pi->start_ns : 0;
        u64 duration = start && now > start ? now - start : 0;
        if (MIN_DURATION_NS == 0 || !start || duration >= MIN_DURATION_NS) {
            struct exit_event *e = events.ringbuf_reserve(sizeof(struct exit_event));
            if (e) {
                fill_header(&e->h, KIND_EXIT);
                e->ppid = pi ? pi->ppid : 0;
                e->flags = start ? EXIT_START_KNOWN : 0;
                e->duration_ns = duration;
                e->exit_code = 0;
                e->signal = 0;
                s32 *code = codes.lookup(&tgid);
                s32 *sig = killsig.lookup(&tgid);
                if (code) {
                    e->flags |= EXIT_CODE_KNOWN;
                    e->exit_code = *code;
                } else if (sig) {
                    e->flags |= EXIT_SIGNALED;
                    e->signal = *sig;
                }
                events.ringbuf_submit(e, 0);
            } else {
                count_lost();
            }
        }
    }
    info.delete(&tgid);
    codes.delete(&tgid);
    killsig.delete(&tgid);
    gensig.delete(&tgid);
    filter_exit(tgid, tid, 1);
    return 0;
}

// ---- files and sockets -------------------------------------------------------
#if TRACE_FILES

static __always_inline int open_enter(const char *path, s32 dfd, u32 flags, u32 mode)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!current_wanted(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct open_args a = {.path = path, .dfd = dfd, .open_flags = flags, .mode = mode};
    open_pending.update(&tid, &a);
    return 0;
}

static __always_inline int open_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct open_args *a = open_pending.lookup(&tid);
    if (!a)
        return 0;
    struct open_event *e = events.ringbuf_reserve(sizeof(struct open_event));
    if (!e) {
        count_lost();
    } else {
        fill_header(&e->h, KIND_OPEN);
        e->ret = ret;
        e->dfd = a->dfd;
        e->open_flags = a->open_flags;
        e->mode = a->mode;
        e->flags = 0;
        long n = bpf_probe_read_user_str(e->path, PATH_LEN, a->path);
        if (n < 0)
            e->path[0] = 0;
        else if (n >= PATH_LEN)
            e->flags |= OPEN_PATH_TRUNCATED;
        events.ringbuf_submit(e, 0);
    }
    open_pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(args->filename, args->dfd, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
    return open_exit(args->ret);
}

#if HAVE_SYS_OPEN
TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(args->filename, -100 /* AT_FDCWD */, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
    return open_exit(args->ret);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!current_wanted(id >> 32))
        return 0;
    u16 family = 0;
    bpf_probe_read_user(&family, sizeof(family), args->uservaddr);
    if (family != AF_INET_NR && family != AF_INET6_NR && family != AF_UNIX_NR)
        return 0;
    u32 tid = (u32)id;
    struct connect_args a = {.addr = args->uservaddr, .fd = args->fd, .addrlen = args->addrlen};
    connect_pending.update(&tid, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct connect_args *a = connect_pending.lookup(&tid);
    if (!a)
        return 0;
    struct connect_event *e = events.ringbuf_reserve(sizeof(struct connect_event));
    if (!e) {
        count_lost();
    } else {
        fill_header(&e->h, KIND_CONNECT);
        e->ret = args->ret;
        e->fd = a->fd;
        u32 n = a->addrlen;
        if (n > SOCKADDR_LEN)
            n = SOCKADDR_LEN;
        e->addrlen = n;
        if (bpf_probe_read_user(e->addr, n, a->addr))
            e->addrlen = 0;
        events.ringbuf_submit(e, 0);
    }
    connect_pending.delete(&tid);
    return 0;
}
#endif
