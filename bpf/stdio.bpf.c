// Payloads of read(2)/write(2) on stdin/stdout/stderr (or every fd) of chosen processes.
//
// Every write in the system hits sys_enter_write, so the filter order matters:
// the fd test is a load from the tracepoint context, the pid test one helper
// call (or one hash lookup when following a tree); only a match copies bytes.
// Records are variable-sized: the payload is read into a per-cpu scratch and
// only the captured bytes go into the ring buffer.
//
// Macros set by agentsight/actors/sources/stdio.py (FILTER_* in process_tree.h):
//   ALL_FDS     capture every fd, not only 0, 1 and 2
//   MAX_BYTES   payload bytes kept per call (the rest is counted in `len`)
//   RING_PAGES  ring buffer size in pages
//   HAVE_GROUP_DEAD  sched_process_exit has the group_dead field
#include "process_tree.h"
#include "stdio.h"

#ifndef ALL_FDS
#define ALL_FDS 0
#endif
#ifndef RING_PAGES
#define RING_PAGES 256
#endif

struct read_args {
    const char *buf;
    u32 fd;
    u32 pad;
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);     // ring buffer reserve failures
BPF_PERCPU_ARRAY(scratch, struct stdio_event, 1);
BPF_TABLE("lru_hash", u32, struct read_args, reads, 4096);  // tid -> read in flight

static __always_inline void count_lost(void)
{
    u32 zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline int task_wanted(u32 tgid)
{
    if (!pid_wanted(tgid))
        return 0;
#if FILTER_COMM_LEN > 0
    char comm[COMM_LEN];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (!comm_matches(comm))
        return 0;
#endif
    return 1;
}

static __always_inline int emit(u32 fd, u32 dir, const char *buf, u64 len)
{
    u32 zero = 0;
    struct stdio_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->uid = (u32)bpf_get_current_uid_gid();
    e->fd = fd;
    e->ts_ns = bpf_ktime_get_boot_ns();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->len = len;
    e->dir = dir;
    u32 n = len < MAX_BYTES ? (u32)len : MAX_BYTES;
    if (n > MAX_BYTES)  // for the verifier
        return 0;
    if (bpf_probe_read_user(e->data, n, buf))
        n = 0;
    e->captured = n;
    if (events.ringbuf_output(e, offsetof(struct stdio_event, data) + n, 0))
        count_lost();
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write)
{
#if !ALL_FDS
    if (args->fd > 2)
        return 0;
#endif
    if (!task_wanted(bpf_get_current_pid_tgid() >> 32) || args->count == 0)
        return 0;
    return emit(args->fd, DIR_WRITE, args->buf, args->count);
}

TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
#if !ALL_FDS
    if (args->fd > 2)
        return 0;
#endif
    u64 id = bpf_get_current_pid_tgid();
    if (!task_wanted(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct read_args a = {.buf = args->buf, .fd = args->fd};
    reads.update(&tid, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_read)
{
    u64 id = bpf_get_current_pid_tgid();
#if !FILTER_TREE && FILTER_PID
    if ((id >> 32) != FILTER_PID)  // cheaper than the lookup below
        return 0;
#endif
    u32 tid = (u32)id;
    struct read_args *a = reads.lookup(&tid);
    if (!a)
        return 0;
    if (args->ret > 0)
        emit(a->fd, DIR_READ, a->buf, args->ret);
    reads.delete(&tid);
    return 0;
}

#if FILTER_TREE
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    tree_fork(bpf_get_current_pid_tgid() >> 32, args->child_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
#if HAVE_GROUP_DEAD
    tree_exit(id >> 32, (u32)id, args->group_dead);
#else
    tree_exit(id >> 32, (u32)id, (id >> 32) == (u32)id);
#endif
    return 0;
}
#endif
