// Payloads of read(2)/write(2) and readv(2)/writev(2) on stdin/stdout/stderr (or every
// fd) of chosen processes.
//
// Every write in the system hits sys_enter_write, so the filter order matters:
// the fd test is a load from the tracepoint context, the pid test one helper
// call (or one hash lookup when following a tree); only a match copies bytes.
// Records are variable-sized: the payload is read into a per-cpu scratch and
// only the captured bytes go into the ring buffer.
//
// write(2) is copied at entry (`len` = bytes asked for). read(2), readv(2) and
// writev(2) are remembered at entry (`pending`, by thread) and copied at exit,
// up to the returned count (`len` = bytes moved): for readv that is the only
// time the bytes are there; for writev the return value is the one length that
// stays exact when there are more iovecs than we copy. A writev record keeps
// its entry timestamp, like a write(2). Vectored calls copy from their first
// VEC_MAX iovecs only; what lies beyond is counted in `len`, not captured.
//
// Macros set by agentsight/actors/sources/stdio.py (FILTER_* in filter.h):
//   ALL_FDS     capture every fd, not only 0, 1 and 2
//   MAX_BYTES   payload bytes kept per call (the rest is counted in `len`)
//   RING_PAGES  ring buffer size in pages
//   HAVE_GROUP_DEAD  sched_process_exit has the group_dead field
#include "filter.h"
#include "stdio.h"

#ifndef ALL_FDS
#define ALL_FDS 0
#endif
#ifndef RING_PAGES
#define RING_PAGES 256
#endif

#define VEC_MAX 8   // iovecs copied per readv/writev
// A vectored copy lands at a variable offset with a variable size, and the
// verifier bounds the two separately: each copy is at most VEC_PIECE bytes at an
// offset below MAX_BYTES, so the scratch carries VEC_PIECE bytes of slack. Half
// of MAX_BYTES keeps the scratch under the 32 KiB per-cpu limit; an iovec then
// takes at most two copies.
#define VEC_PIECE ((MAX_BYTES + 1) / 2)

// The syscall a thread is in, between its entry and exit tracepoints.
#define CALL_READ 1
#define CALL_READV 2
#define CALL_WRITEV 3

struct pending {
    u64 buf;        // read: the buffer; readv/writev: the iovec array
    u64 ts_ns;      // at entry
    u32 fd;
    u32 vlen;       // iovec count (readv/writev)
    u32 call;       // CALL_*: an exit only takes its own entry
    u32 pad;
};

// struct iovec as a 64-bit process lays it out (UAPI, user memory).
struct user_iovec {
    u64 base;
    u64 len;
};

struct scratch_rec {
    struct stdio_event e;
    char slack[VEC_PIECE];  // see VEC_PIECE; never sent
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);     // ring buffer reserve failures
BPF_PERCPU_ARRAY(scratch, struct scratch_rec, 1);
BPF_TABLE("lru_hash", u32, struct pending, pending, 4096);  // tid -> call in flight

static __always_inline void count_lost(void)
{
    u32 zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline int task_wanted(u32 tgid)
{
    return process_wanted(tgid);
}

static __always_inline int fd_wanted(u64 fd)
{
#if !ALL_FDS
    if (fd > 2)
        return 0;
#endif
    return 1;
}

// The scratch record with everything but the payload filled in.
static __always_inline struct stdio_event *start(u32 fd, u32 dir, u64 len, u64 ts_ns)
{
    u32 zero = 0;
    struct stdio_event *e = (struct stdio_event *)scratch.lookup(&zero);
    if (!e)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->uid = (u32)bpf_get_current_uid_gid();
    e->fd = fd;
    e->ts_ns = ts_ns;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->len = len;
    e->dir = dir;
    return e;
}

static __always_inline void send(struct stdio_event *e, u64 n)
{
    asm volatile("" : "+r"(n));  // keep clang from testing a copy of n (see emit_vec)
    if (n > MAX_BYTES)  // for the verifier
        return;
    e->captured = n;
    if (events.ringbuf_output(e, offsetof(struct stdio_event, data) + n, 0))
        count_lost();
}

static __always_inline int emit(u32 fd, u32 dir, const char *buf, u64 len)
{
    struct stdio_event *e = start(fd, dir, len, bpf_ktime_get_boot_ns());
    if (!e)
        return 0;
    u32 n = len < MAX_BYTES ? (u32)len : MAX_BYTES;
    if (n > MAX_BYTES)  // for the verifier
        return 0;
    if (bpf_probe_read_user(e->data, n, buf))
        n = 0;
    send(e, n);
    return 0;
}

// The first `len` bytes (cut at MAX_BYTES) of the first VEC_MAX iovecs of `vec`.
// A fault stops the copy; the bytes before it are kept.
static __always_inline int emit_vec(u32 fd, u32 dir, u64 vec, u32 vlen, u64 len, u64 ts_ns)
{
    struct stdio_event *e = start(fd, dir, len, ts_ns);
    if (!e)
        return 0;
    u32 want = len < MAX_BYTES ? (u32)len : MAX_BYTES;
    u32 off = 0;    // bytes captured so far
#pragma unroll
    for (int i = 0; i < VEC_MAX; i++) {
        if (i >= vlen || off >= want)
            break;
        struct user_iovec iov;
        if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(vec + i * sizeof(iov))))
            break;
#pragma unroll
        for (int piece = 0; piece < 2; piece++) {
            u64 n = want - off;
            if (n > iov.len)
                n = iov.len;
            if (n > VEC_PIECE)
                n = VEC_PIECE;
            if (n == 0)
                break;
            // off < want <= MAX_BYTES already, but clang drops a test it can prove and
            // the verifier cannot: hide off from clang so that the bound stays.
            asm volatile("" : "+r"(off));
            if (off >= MAX_BYTES)
                break;
            if (bpf_probe_read_user(e->data + off, n, (void *)iov.base))
                goto done;
            off += n;
            iov.base += n;
            iov.len -= n;
        }
    }
done:
    send(e, off);
    return 0;
}

// Remember a read/readv/writev of a wanted task until its exit.
static __always_inline int remember(u32 call, u64 fd, u64 buf, u64 vlen)
{
    if (!fd_wanted(fd))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (!task_wanted(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct pending p = {.buf = buf, .fd = fd, .call = call};
    if (call == CALL_WRITEV)
        p.ts_ns = bpf_ktime_get_boot_ns();
    p.vlen = vlen < VEC_MAX ? (u32)vlen : VEC_MAX;
    pending.update(&tid, &p);
    return 0;
}

// The exit of a remembered call: emit what it moved (ret > 0), forget it.
static __always_inline int finish(u32 call, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
#if !FILTER_TREE && FILTER_PID
    if ((id >> 32) != FILTER_PID)  // cheaper than the lookup below
        return 0;
#endif
    u32 tid = (u32)id;
    struct pending *p = pending.lookup(&tid);
    if (!p)
        return 0;
    if (p->call == call && ret > 0) {
        if (call == CALL_READ)
            emit(p->fd, DIR_READ, (const char *)p->buf, ret);
        else if (call == CALL_READV)
            emit_vec(p->fd, DIR_READ, p->buf, p->vlen, ret, bpf_ktime_get_boot_ns());
        else
            emit_vec(p->fd, DIR_WRITE, p->buf, p->vlen, ret, p->ts_ns);
    }
    pending.delete(&tid);
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
    return remember(CALL_READ, args->fd, (u64)args->buf, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_read)
{
    return finish(CALL_READ, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_readv)
{
    return remember(CALL_READV, args->fd, (u64)args->vec, args->vlen);
}

TRACEPOINT_PROBE(syscalls, sys_exit_readv)
{
    return finish(CALL_READV, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_writev)
{
    return remember(CALL_WRITEV, args->fd, (u64)args->vec, args->vlen);
}

TRACEPOINT_PROBE(syscalls, sys_exit_writev)
{
    return finish(CALL_WRITEV, args->ret);
}

#if FILTER_TREE || FILTER_COMM_LEN > 0
// Keep the traced set and the matching names in step with the processes (filter.h).
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    filter_fork(bpf_get_current_pid_tgid() >> 32, args->child_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
#if HAVE_GROUP_DEAD
    filter_exit(id >> 32, (u32)id, args->group_dead);
#else
    filter_exit(id >> 32, (u32)id, (id >> 32) == (u32)id);
#endif
    return 0;
}
#endif
#if FILTER_COMM_LEN > 0
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    filter_exec(bpf_get_current_pid_tgid() >> 32);
    return 0;
}
#endif
