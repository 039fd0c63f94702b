/* TLS plaintext capture: uprobes on SSL_write / SSL_read / SSL_write_ex / SSL_read_ex.
 *
 * Theory of operation
 * - An entry probe remembers (buffer, length pointer, SSL*, entry time) per thread in
 *   `calls`; the matching return probe reads how many bytes moved and copies that many
 *   bytes of the buffer into the ring buffer: whole chunks of SSL_CHUNK bytes in a
 *   bounded loop, then one tail record sized to the smallest class that fits.
 * - Where the loader verified that an _ex function is `sub $n,%rsp; call internal`,
 *   the entry probe sits on the call (+4: x86 emulates calls, the kernel does not have
 *   to single-step the `sub`) and the return probe sits on the internal function, which
 *   takes the same arguments and whose return value the wrapper only clamps. Those entries
 *   are marked `via_callee` so the internal function's return matches only them.
 * - Calls nest: each thread keeps a small stack of open calls (`calls`). A call made
 *   inside another one is its own frame and is reported on its own (node's undici
 *   writes a request from the handshake callback that runs inside SSL_read), except
 *   a re-entry: a call on the same SSL* in the same direction as an open one (a
 *   function calling itself or its wrapper: BoringSSL's SSL_write_ex -> SSL_write,
 *   OpenSSL's SSL_write -> the internal function the _ex probe returns on). A
 *   re-entry pushes nothing; if its return would match the top frame, the frame
 *   counts it in `skip`, so only the outer call's own return reports it, once.
 * - A return probe matches only the top frame, and only if that frame is its own
 *   function's (or, for the internal function, a frame entered `via_callee`).
 * - Filters (pid, process tree, uid, process name: bpf/filter.h) run at entry: a
 *   filtered call pushes nothing and its return costs one failed map lookup.
 * - Nothing is lost silently: failed reservations are counted in `drops` and a call
 *   stops at its first failed chunk, so what arrives is always a prefix.
 *
 * Options arrive as #defines (agentsight.bpfprog.program_text).
 */
#include <uapi/linux/ptrace.h>
#include "filter.h"
#include "ssl.h"

#ifndef SSL_MAX_BYTES
#define SSL_MAX_BYTES (1 << 20)
#endif
#ifndef SSL_CHUNK
#define SSL_CHUNK 16384
#endif
#ifndef SSL_MAX_CHUNKS
#define SSL_MAX_CHUNKS ((SSL_MAX_BYTES + SSL_CHUNK - 1) / SSL_CHUNK)
#endif
#ifndef SSL_RING_PAGES
#define SSL_RING_PAGES 4096
#endif
#ifndef SSL_HANDSHAKE
#define SSL_HANDSHAKE 0
#endif
#ifndef SSL_WAKEUP_BYTES
#define SSL_WAKEUP_BYTES (1 << 20)
#endif

/* Calls open on one thread at once (outer call, nested calls). */
#ifndef SSL_STACK_DEPTH
#define SSL_STACK_DEPTH 4
#endif

struct ssl_call {
    u64 ts;
    u64 ssl;
    u64 buf;
    u64 len_ptr;   /* size_t * of the _ex functions, 0 for SSL_write / SSL_read */
    u32 func;
    u32 via_callee;
    u32 skip;      /* re-entries whose return would look like this frame's own */
    u32 _pad;
};

struct ssl_stack {
    u32 depth;
    u32 _pad;
    struct ssl_call frame[SSL_STACK_DEPTH];
};

/* Full chunks and the tail size classes (each reservation size must be a constant). */
#define DEFINE_CHUNK(SIZE) struct ssl_chunk_##SIZE { struct ssl_record hdr; char data[SIZE]; };
DEFINE_CHUNK(256)
DEFINE_CHUNK(1024)
DEFINE_CHUNK(4096)
DEFINE_CHUNK(8192)
struct ssl_chunk_full { struct ssl_record hdr; char data[SSL_CHUNK]; };

BPF_RINGBUF_OUTPUT(events, SSL_RING_PAGES);
BPF_HASH(calls, u32, struct ssl_stack, 16384);
BPF_PERCPU_ARRAY(empty_stack, struct ssl_stack, 1);
BPF_PERCPU_ARRAY(drops, u64, SSL_DROP_SLOTS);
BPF_PERCPU_ARRAY(unannounced, u64, 1);
#if SSL_HANDSHAKE
struct hs_key { u64 ssl; u32 pid; u32 _pad; };
BPF_HASH(hs_calls, u32, struct ssl_call, 16384);
BPF_TABLE("lru_hash", struct hs_key, u64, hs_first, 16384);
#endif

static __always_inline void count_drop(u32 slot, u64 n)
{
    u64 *v = drops.lookup(&slot);
    if (v)
        *v += n;
}

/* Wake the reader once per SSL_WAKEUP_BYTES submitted on this CPU, not per record:
 * a wakeup per record costs both sides more than the copy. The reader also polls
 * with a timeout, which collects what is left below the threshold. */
static __always_inline u64 wakeup_flags(u64 size)
{
    u32 zero = 0;
    u64 *pending = unannounced.lookup(&zero);
    if (!pending)
        return 0;
    *pending += size;
    if (*pending < SSL_WAKEUP_BYTES)
        return BPF_RB_NO_WAKEUP;
    *pending = 0;
    return BPF_RB_FORCE_WAKEUP;
}

static __always_inline int is_traced(u64 pid_tgid)
{
    return process_wanted(pid_tgid >> 32);
}

static __always_inline u32 direction(u32 func)
{
    return func == SSL_FN_READ || func == SSL_FN_READ_EX;
}

/* Whether a return probe (func, via_callee) is the return of frame c. */
static __always_inline int returns_from(struct ssl_call *c, u32 func, u32 via_callee)
{
    return via_callee ? c->via_callee : (!c->via_callee && c->func == func);
}

static __always_inline int enter(struct pt_regs *ctx, u32 func, u32 via_callee, u64 len_ptr)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!is_traced(pid_tgid))
        return 0;
    u32 tid = pid_tgid;
    u32 zero = 0;
    struct ssl_stack *empty = empty_stack.lookup(&zero);
    if (!empty)
        return 0;
    struct ssl_stack *s = calls.lookup_or_try_init(&tid, empty);
    if (!s) {
        count_drop(SSL_DROP_PENDING, 1);
        return 0;
    }
    u64 ssl = PT_REGS_PARM1(ctx);
    u32 depth = s->depth;
    u32 dir = direction(func);
#pragma unroll
    for (int i = 0; i < SSL_STACK_DEPTH; i++) {
        if (i >= depth)
            break;
        if (s->frame[i].ssl == ssl && direction(s->frame[i].func) == dir) {
            /* A re-entry: the open call reports these bytes. */
            u32 top = depth - 1;
            if (top < SSL_STACK_DEPTH && returns_from(&s->frame[top], func, via_callee))
                s->frame[top].skip++;
            return 0;
        }
    }
    if (depth >= SSL_STACK_DEPTH) {
        count_drop(SSL_DROP_PENDING, 1);
        return 0;
    }
    struct ssl_call *c = &s->frame[depth];
    c->ts = bpf_ktime_get_boot_ns();
    c->ssl = ssl;
    c->buf = PT_REGS_PARM2(ctx);
    c->len_ptr = len_ptr;
    c->func = func;
    c->via_callee = via_callee;
    c->skip = 0;
    s->depth = depth + 1;
    return 0;
}

static __always_inline void fill_header(struct ssl_record *h, struct ssl_call *c, u64 pid_tgid,
                                        u64 now, u8 kind)
{
    h->ts_ns = now;
    h->latency_ns = now - c->ts;
    h->ssl = c->ssl;
    h->call_id = c->ts;
    h->pid = pid_tgid >> 32;
    h->tid = pid_tgid;
    h->uid = bpf_get_current_uid_gid();
    h->kind = kind;
    h->func = c->func;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* Header of one chunk record; returns the user address its bytes come from. */
static __always_inline void *fill_chunk(struct ssl_record *r, struct ssl_record *hdr,
                                        struct ssl_call *c, u32 off, u32 n)
{
    __builtin_memcpy(r, hdr, sizeof(*hdr));
    r->offset = off;
    r->chunk_len = n;
    return (void *)(c->buf + off);
}

/* Read n (<= max) bytes into a record. The empty asm hides n's known range from clang,
 * so the clamp stays in the code and the verifier sees the read fit the record.
 * (bcc allows no map calls inside macros, so the size classes are spelled out below.) */
#define READ_CHUNK(r, n, max, src)                                   \
    {                                                                \
        u64 len_ = (n); /* 64-bit: no zero-extension copy to lose the bound */ \
        asm volatile("" : "+r"(len_));                               \
        if (len_ > (max))                                            \
            len_ = (max);                                            \
        if (bpf_probe_read_user((r)->data, len_, (src)) != 0)        \
            (r)->hdr.flags |= SSL_FLAG_READ_FAILED;                  \
    }

/* Copy `cap` bytes of the call's buffer into the ring, chunk by chunk. */
static __always_inline int emit_data(struct ssl_call *c, u64 pid_tgid, s64 moved)
{
    struct ssl_record hdr = {};
    u64 now = bpf_ktime_get_boot_ns();
    u32 cap = moved > SSL_MAX_BYTES ? SSL_MAX_BYTES : moved;
    u32 full = cap / SSL_CHUNK;
    u32 tail = cap - full * SSL_CHUNK;
    u32 off = 0;
    void *src;

    fill_header(&hdr, c, pid_tgid, now, SSL_REC_DATA);
    hdr.ret_len = moved;
    hdr.cap_len = cap;

    for (u32 i = 0; i < SSL_MAX_CHUNKS; i++) {
        /* Keep clang from rewriting the loop into an `off != end` test, which the
         * verifier cannot bound: it must see `i < SSL_MAX_CHUNKS` on every turn. */
        asm volatile("" : "+r"(i));
        if (i >= full)
            break;
        off = i * SSL_CHUNK;
        struct ssl_chunk_full *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_full));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, SSL_CHUNK);
        if (bpf_probe_read_user(r->data, SSL_CHUNK, src) != 0)
            r->hdr.flags |= SSL_FLAG_READ_FAILED;
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    }
    off = full * SSL_CHUNK;
    if (tail == 0)
        return 0;
    if (tail <= 256) {
        struct ssl_chunk_256 *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_256));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, tail);
        READ_CHUNK(r, tail, 256, src)
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    } else if (tail <= 1024) {
        struct ssl_chunk_1024 *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_1024));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, tail);
        READ_CHUNK(r, tail, 1024, src)
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    } else if (tail <= 4096) {
        struct ssl_chunk_4096 *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_4096));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, tail);
        READ_CHUNK(r, tail, 4096, src)
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    } else if (tail <= 8192) {
        struct ssl_chunk_8192 *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_8192));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, tail);
        READ_CHUNK(r, tail, 8192, src)
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    } else {
        struct ssl_chunk_full *r = events.ringbuf_reserve(sizeof(struct ssl_chunk_full));
        if (!r)
            goto lost;
        src = fill_chunk(&r->hdr, &hdr, c, off, tail);
        READ_CHUNK(r, tail, SSL_CHUNK, src)
        events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    }
    return 0;

lost:
    count_drop(SSL_DROP_RECORDS, (cap - off + SSL_CHUNK - 1) / SSL_CHUNK);
    count_drop(SSL_DROP_BYTES, cap - off);
    count_drop(SSL_DROP_CALLS, 1);
    return 0;
}

/* Return of a call entered with `func`; `rc` is the function's return value. */
static __always_inline int leave(u32 func, u32 via_callee, s64 rc)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct ssl_stack *s = calls.lookup(&tid);
    if (!s)
        return 0;
    u32 top = s->depth - 1;
    if (top >= SSL_STACK_DEPTH)
        return 0;
    struct ssl_call *c = &s->frame[top];
    if (!returns_from(c, func, via_callee))
        return 0;  /* a re-entry's or a shared internal function's return */
    if (c->skip) {
        c->skip--;
        return 0;
    }
    struct ssl_call call = *c;
    if (top == 0)
        calls.delete(&tid);
    else
        s->depth = top;
    if (rc <= 0)
        return 0;  /* nothing moved (error, or the non-blocking "try again") */
    s64 moved = rc;
    if (call.len_ptr) {
        size_t n = 0;
        if (bpf_probe_read_user(&n, sizeof(n), (void *)call.len_ptr) != 0)
            return 0;
        moved = n;
    }
    if (moved <= 0)
        return 0;
    return emit_data(&call, pid_tgid, moved);
}

/* Entry probes at the symbol (or its verified call past the prologue). */
int enter_write(struct pt_regs *ctx) { return enter(ctx, SSL_FN_WRITE, 0, 0); }
int enter_read(struct pt_regs *ctx) { return enter(ctx, SSL_FN_READ, 0, 0); }
int enter_write_ex(struct pt_regs *ctx) { return enter(ctx, SSL_FN_WRITE_EX, 0, PT_REGS_PARM4(ctx)); }
int enter_read_ex(struct pt_regs *ctx) { return enter(ctx, SSL_FN_READ_EX, 0, PT_REGS_PARM4(ctx)); }
int enter_write_ex_callee(struct pt_regs *ctx) { return enter(ctx, SSL_FN_WRITE_EX, 1, PT_REGS_PARM4(ctx)); }
int enter_read_ex_callee(struct pt_regs *ctx) { return enter(ctx, SSL_FN_READ_EX, 1, PT_REGS_PARM4(ctx)); }

/* Return probes: SSL_write/SSL_read return the byte count, the _ex pair 1 and *len. */
int leave_write(struct pt_regs *ctx) { return leave(SSL_FN_WRITE, 0, (int)PT_REGS_RC(ctx)); }
int leave_read(struct pt_regs *ctx) { return leave(SSL_FN_READ, 0, (int)PT_REGS_RC(ctx)); }
int leave_write_ex(struct pt_regs *ctx) { return leave(SSL_FN_WRITE_EX, 0, (int)PT_REGS_RC(ctx)); }
int leave_read_ex(struct pt_regs *ctx) { return leave(SSL_FN_READ_EX, 0, (int)PT_REGS_RC(ctx)); }
int leave_callee(struct pt_regs *ctx) { return leave(0, 1, (int)PT_REGS_RC(ctx)); }

#if SSL_HANDSHAKE
int enter_handshake(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!is_traced(pid_tgid))
        return 0;
    u32 tid = pid_tgid;
    struct ssl_call c = {};
    c.ts = bpf_ktime_get_boot_ns();
    c.ssl = PT_REGS_PARM1(ctx);
    c.func = SSL_FN_HANDSHAKE;
    hs_calls.update(&tid, &c);
    struct hs_key k = {.ssl = c.ssl, .pid = pid_tgid >> 32};
    hs_first.insert(&k, &c.ts);  /* keeps the first attempt of a non-blocking handshake */
    return 0;
}

/* Reports a finished handshake (1) or a clean failure (0); <0 may be "try again". */
int leave_handshake(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct ssl_call *c = hs_calls.lookup(&tid);
    if (!c)
        return 0;
    struct ssl_call call = *c;
    hs_calls.delete(&tid);
    int rc = PT_REGS_RC(ctx);
    if (rc < 0)
        return 0;
    struct hs_key k = {.ssl = call.ssl, .pid = pid_tgid >> 32};
    u64 *first = hs_first.lookup(&k);
    if (first) {
        call.ts = *first;
        hs_first.delete(&k);
    }
    struct ssl_record *r = events.ringbuf_reserve(sizeof(struct ssl_record));
    if (!r) {
        count_drop(SSL_DROP_RECORDS, 1);
        return 0;
    }
    __builtin_memset(r, 0, sizeof(*r));
    fill_header(r, &call, pid_tgid, bpf_ktime_get_boot_ns(), SSL_REC_HANDSHAKE);
    r->ret_len = rc;
    events.ringbuf_submit(r, wakeup_flags(sizeof(*r)));
    return 0;
}
#endif

/* Keep the traced set and the matching names in step with the processes (filter.h). */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    filter_fork(bpf_get_current_pid_tgid() >> 32, args->child_pid);
    return 0;
}

/* A thread that dies inside a probed call never returns: forget its calls. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    calls.delete(&tid);
    filter_exit(pid_tgid >> 32, tid, tid == (u32)(pid_tgid >> 32));
    return 0;
}

/* Tell user space to look for TLS libraries in what a traced process now runs. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    calls.delete(&tid);  /* the old program's open calls will never return */
    filter_exec(pid_tgid >> 32);
    if (!is_traced(pid_tgid))
        return 0;
    struct ssl_record *r = events.ringbuf_reserve(sizeof(struct ssl_record));
    if (!r) {
        count_drop(SSL_DROP_RECORDS, 1);
        return 0;
    }
    __builtin_memset(r, 0, sizeof(*r));
    r->ts_ns = bpf_ktime_get_boot_ns();
    r->pid = pid_tgid >> 32;
    r->tid = pid_tgid;
    r->uid = bpf_get_current_uid_gid();
    r->kind = SSL_REC_EXEC;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    events.ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);  /* rescan soon: rare and urgent */
    return 0;
}
