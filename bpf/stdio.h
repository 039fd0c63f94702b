// The record stdio.bpf.c sends to user space through the `events` ring buffer.
// Mirrored once in agentsight/actors/sources/stdio.py: keep the two in step.
#ifndef MAX_BYTES
#define MAX_BYTES 8192      // payload bytes kept per call
#endif

#define DIR_READ 0
#define DIR_WRITE 1

struct stdio_event {
    u32 pid;        // tgid
    u32 tid;
    u32 uid;
    u32 fd;
    u64 ts_ns;      // bpf_ktime_get_boot_ns()
    char comm[COMM_LEN];
    u64 len;        // bytes write(2) asked for / read, readv, writev returned
    u32 dir;        // DIR_READ or DIR_WRITE
    u32 captured;   // bytes of data that follow (< len: cut at MAX_BYTES or VEC_MAX iovecs)
    char data[MAX_BYTES];   // only `captured` bytes are sent
};                  // header: 56 bytes
