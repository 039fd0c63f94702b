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
 * Options arrive as #defines (agentsight.kernel.bpfprog.program_text).
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
    u64 len_ptr;   /* size_t * of the _ex functions and EVP_AEAD_CTX_open, else 0 */
    u64 fixed_len; /* EVP_AEAD_CTX_open_gather: the length it decrypts, else 0 */
    u32 func;
    u32 via_callee;
    u32 skip;      /* re-entries whose return would look like this frame's own */
    u32 emitted;   /* reported at entry (AEAD seal): the return only pops the frame */
    s32 fd;        /* AEAD open: the socket the thread last read, else -1 */
    u32 aad_len;
    u8 aad[16];
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
/* AEAD layer: the socket each thread last read from; the context each thread sealed
 * last, until its record goes out on a socket; the socket each context was bound to. */
BPF_HASH(io_fd, u32, s32, 16384);
BPF_HASH(pending_seal, u32, u64, 16384);
BPF_TABLE("lru_hash", u64, s32, ctx_fd, 16384);
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

/* A header-only record of `kind` for the current task, or NULL (counted) when the ring is full. */
static __always_inline struct ssl_record *notice(u64 pid_tgid, u8 kind)
{
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
    r->kind = kind;
    r->fd = -1;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    return r;
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
    return func == SSL_FN_READ || func == SSL_FN_READ_EX || func == SSL_FN_OPEN || func == SSL_FN_OPEN_GATHER;
}

/* Whether a return probe (func, via_callee) is the return of frame c. */
static __always_inline int returns_from(struct ssl_call *c, u32 func, u32 via_callee)
{
    return via_callee ? c->via_callee : (!c->via_callee && c->func == func);
}

/* Push a frame for a call of `func` on `ssl`; NULL when the call is not followed
 * (filtered, a re-entry, or no room). */
static __always_inline struct ssl_call *push(u64 ssl, u32 func, u32 via_callee)
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
    __builtin_memset(c, 0, sizeof(*c));
    c->ts = bpf_ktime_get_boot_ns();
    c->ssl = ssl;
    c->func = func;
    c->via_callee = via_callee;
    c->fd = -1;
    s->depth = depth + 1;
    return c;
}

static __always_inline int enter(struct pt_regs *ctx, u32 func, u32 via_callee, u64 len_ptr)
{
    struct ssl_call *c = push(PT_REGS_PARM1(ctx), func, via_callee);
    if (c) {
        c->buf = PT_REGS_PARM2(ctx);
        c->len_ptr = len_ptr;
    }
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
    h->fd = c->fd;
    h->extra_len = c->aad_len;
    __builtin_memcpy(h->extra, c->aad, sizeof(h->extra));
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
    if (rc <= 0 || call.emitted)
        return 0;  /* nothing moved (error, or the non-blocking "try again"), or reported */
    s64 moved = call.fixed_len ? (s64)call.fixed_len : rc;
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

/* ---- AEAD layer (rustls on aws-lc: one TLS record per call) --------------------
 * Arguments past the sixth are on the stack: at entry, 8(%rsp) is the seventh. */
static __always_inline u64 stack_arg(struct pt_regs *ctx, int n)
{
    u64 v = 0;
    bpf_probe_read_user(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 * (n - 6)));
    return v;
}

/* The AAD of a TLS record: its 5-byte header (TLS 1.3) or seq+header (13 bytes, TLS 1.2). */
static __always_inline void read_aad(struct ssl_call *c, u64 ad, u64 ad_len)
{
    int rc = -1;
    if (ad && ad_len >= 13)
        rc = bpf_probe_read_user(c->aad, 13, (void *)ad);
    else if (ad && ad_len >= 5)
        rc = bpf_probe_read_user(c->aad, 5, (void *)ad);
    c->aad_len = rc == 0 ? ad_len : 0;
}

/* A seal's plaintext is read at entry (it is encrypted in place); its socket is learnt
 * when the thread next writes to one (aead_out). */
static __always_inline int seal(struct pt_regs *ctx, u32 func, u64 in, u64 in_len, u64 ad, u64 ad_len)
{
    u64 aead = PT_REGS_PARM1(ctx);
    struct ssl_call *c = push(aead, func, 0);
    if (!c || !in_len)
        return 0;
    c->buf = in;
    read_aad(c, ad, ad_len);
    c->emitted = 1;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    emit_data(c, pid_tgid, in_len);
    u32 tid = pid_tgid;
    pending_seal.update(&tid, &aead);
    return 0;
}

int enter_seal(struct pt_regs *ctx)
{
    return seal(ctx, SSL_FN_SEAL, stack_arg(ctx, 7), stack_arg(ctx, 8), stack_arg(ctx, 9), stack_arg(ctx, 10));
}

int enter_seal_scatter(struct pt_regs *ctx)
{
    return seal(ctx, SSL_FN_SEAL_SCATTER, stack_arg(ctx, 8), stack_arg(ctx, 9), stack_arg(ctx, 12),
                stack_arg(ctx, 13));
}

/* An open's plaintext is read at its return; its socket is the one the thread last read. */
static __always_inline struct ssl_call *open_frame(struct pt_regs *ctx, u32 func, u64 ad, u64 ad_len)
{
    struct ssl_call *c = push(PT_REGS_PARM1(ctx), func, 0);
    if (!c)
        return 0;
    c->buf = PT_REGS_PARM2(ctx);
    read_aad(c, ad, ad_len);
    u32 tid = bpf_get_current_pid_tgid();
    s32 *fd = io_fd.lookup(&tid);
    if (fd)
        c->fd = *fd;
    return c;
}

int enter_open(struct pt_regs *ctx)
{
    struct ssl_call *c = open_frame(ctx, SSL_FN_OPEN, stack_arg(ctx, 9), stack_arg(ctx, 10));
    if (c)
        c->len_ptr = PT_REGS_PARM3(ctx);
    return 0;
}

int enter_open_gather(struct pt_regs *ctx)
{
    struct ssl_call *c = open_frame(ctx, SSL_FN_OPEN_GATHER, stack_arg(ctx, 9), stack_arg(ctx, 10));
    if (c)
        c->fixed_len = PT_REGS_PARM6(ctx);
    return 0;
}

int leave_seal(struct pt_regs *ctx) { return leave(SSL_FN_SEAL, 0, (int)PT_REGS_RC(ctx)); }
int leave_seal_scatter(struct pt_regs *ctx) { return leave(SSL_FN_SEAL_SCATTER, 0, (int)PT_REGS_RC(ctx)); }
int leave_open(struct pt_regs *ctx) { return leave(SSL_FN_OPEN, 0, (int)PT_REGS_RC(ctx)); }
int leave_open_gather(struct pt_regs *ctx) { return leave(SSL_FN_OPEN_GATHER, 0, (int)PT_REGS_RC(ctx)); }

/* Syscall tracepoints, attached by user space only once an AEAD library is probed
 * (they cost every read and write on the machine a map lookup). The record layout of
 * syscalls:sys_enter_* is 8 bytes of common fields, the syscall number, then the
 * arguments as unsigned longs (stable: tracefs format). */
struct sys_enter_args {
    u64 common;
    s64 nr;
    u64 args[6];
};

/* read/readv/recvfrom/recvmsg: remember the socket the thread reads. */
int aead_in(struct sys_enter_args *args)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!is_traced(pid_tgid))
        return 0;
    u32 tid = pid_tgid;
    s32 fd = args->args[0];
    io_fd.update(&tid, &fd);
    return 0;
}

/* write/writev/sendto/sendmsg after a seal: the sealed context goes out on this socket. */
int aead_out(struct sys_enter_args *args)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u64 *aead = pending_seal.lookup(&tid);
    if (!aead)
        return 0;
    u64 key = *aead;
    pending_seal.delete(&tid);
    s32 fd = args->args[0];
    s32 *known = ctx_fd.lookup(&key);
    if (known && *known == fd)
        return 0;
    ctx_fd.update(&key, &fd);
    struct ssl_record *r = notice(pid_tgid, SSL_REC_BIND);
    if (!r)
        return 0;
    r->ssl = key;
    r->fd = fd;
    events.ringbuf_submit(r, 0);
    return 0;
}

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
    struct ssl_record *r = notice(pid_tgid, SSL_REC_EXEC);
    if (r)
        events.ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);  /* rescan soon: rare and urgent */
    return 0;
}

/* A traced process starts a TCP connection (the SYN_SENT transition runs in its context):
 * user space checks that what it maps has a probed TLS stack, and says so when not. */
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->newstate != 2 /* TCP_SYN_SENT */ || args->protocol != 6 /* IPPROTO_TCP */)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!is_traced(pid_tgid))
        return 0;
    struct ssl_record *r = notice(pid_tgid, SSL_REC_CONNECT);
    if (!r)
        return 0;
    r->family = args->family;
    r->port = args->dport;
    if (args->family == 2) {
        __builtin_memcpy(r->extra, args->daddr, 4);
        r->extra_len = 4;
    } else {
        __builtin_memcpy(r->extra, args->daddr_v6, 16);
        r->extra_len = 16;
    }
    events.ringbuf_submit(r, 0);
    return 0;
}
