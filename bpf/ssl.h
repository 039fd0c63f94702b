/* Kernel -> user records of bpf/ssl.bpf.c.
 *
 * Mirrored once in Python: agentsight/actors/sources/ssl.py (RECORD), field for
 * field in this order. Change both together (tests/unit/test_ssl_program.py checks).
 *
 * Every ring-buffer record starts with struct ssl_record. A DATA record is followed
 * by chunk_len captured bytes: a call that moved more than one chunk is split across
 * several records (same tid + call_id, increasing offset), reassembled in user space.
 */
#ifndef AGENTSIGHT_SSL_H
#define AGENTSIGHT_SSL_H

/* kind */
#define SSL_REC_DATA      1  /* plaintext of one SSL_write / SSL_read call (one chunk) */
#define SSL_REC_HANDSHAKE 2  /* SSL_do_handshake finished; ret_len holds its return value */
#define SSL_REC_EXEC      3  /* a traced process called execve(): rescan its mappings */
#define SSL_REC_CONNECT   4  /* a traced process started a TCP connection (extra: address, port) */
#define SSL_REC_BIND      5  /* an AEAD context's sealed records went out on socket `fd` */

/* func */
#define SSL_FN_WRITE      1
#define SSL_FN_READ       2
#define SSL_FN_WRITE_EX   3
#define SSL_FN_READ_EX    4
#define SSL_FN_HANDSHAKE  5
/* AEAD layer (aws-lc, BoringSSL): one TLS record each; extra holds the AAD. */
#define SSL_FN_SEAL          6  /* EVP_AEAD_CTX_seal: plaintext at entry */
#define SSL_FN_SEAL_SCATTER  7  /* EVP_AEAD_CTX_seal_scatter: plaintext at entry */
#define SSL_FN_OPEN          8  /* EVP_AEAD_CTX_open: plaintext at return (*out_len) */
#define SSL_FN_OPEN_GATHER   9  /* EVP_AEAD_CTX_open_gather: plaintext at return (in_len) */

/* flags */
#define SSL_FLAG_READ_FAILED 1  /* bpf_probe_read_user failed: the chunk's bytes are zeros */

/* Per-CPU drop counters (index into the `drops` array). */
#define SSL_DROP_RECORDS  0  /* ring-buffer reservations that failed */
#define SSL_DROP_BYTES    1  /* plaintext bytes those records would have carried */
#define SSL_DROP_CALLS    2  /* calls that lost at least one record */
#define SSL_DROP_PENDING  3  /* calls not tracked because the in-flight map was full */
#define SSL_DROP_SLOTS    4

struct ssl_record {
    __u64 ts_ns;       /* boot-time ns when the call returned */
    __u64 latency_ns;  /* return minus entry (handshake: since the first attempt) */
    __u64 ssl;         /* the SSL* pointer (AEAD: the EVP_AEAD_CTX*): with pid, the connection key */
    __u64 call_id;     /* boot-time ns of the entry: with tid, names the call */
    __s64 ret_len;     /* bytes the call moved (handshake: its return value) */
    __u32 pid;
    __u32 tid;
    __u32 uid;
    __u32 offset;      /* where this chunk starts in the call's buffer */
    __u32 cap_len;     /* bytes of the call captured over all chunks (<= SSL_MAX_BYTES) */
    __u32 chunk_len;   /* bytes following this header */
    __u8 kind;
    __u8 func;
    __u16 flags;
    char comm[16];
    __s32 fd;          /* AEAD open: the socket the thread last read; BIND: the socket; else -1 */
    __u16 port;        /* CONNECT: destination port */
    __u16 family;      /* CONNECT: AF_INET or AF_INET6 */
    __u32 extra_len;   /* bytes of extra that mean something */
    __u8 extra[16];    /* CONNECT: destination address; AEAD: the AAD (TLS record header) */
};

#endif
