// Which processes a program reports on, decided in the kernel: one header, one
// meaning, shared by process.bpf.c, stdio.bpf.c and ssl.bpf.c. User space sets:
//
//   FILTER_TREE  only tgids in the `traced` map. User space seeds it (a pid and
//                its descendants, a pid set); a fork of a traced process adds the
//                child and the exit path removes it, so a process tree is
//                followed without user space in the loop.
//   FILTER_PID   only this tgid (0 = any), when not following a tree.
//   FILTER_UID   only this uid (-1 = any).
//   FILTER_COMM  a string literal, FILTER_COMM_LEN its length (0 = no name filter):
//                only processes whose *name* starts with it. A process's name is
//                the one its program got at exec (what /proc/PID/comm of its main
//                thread shows, at most 15 characters); every thread of a matching
//                process matches, whatever the thread calls itself (Bun runs TLS on
//                a thread named "HTTP Client", node on "node" workers...). The
//                `named` map holds the matching tgids: user space seeds it from
//                /proc at start, each exec decides again, a fork inherits its
//                parent's, an exit forgets. A later prctl(PR_SET_NAME) does not
//                change it.
//
// A program calls filter_exec / filter_fork / filter_exit from its sched_process_*
// tracepoints so both maps follow the processes.
#ifndef AGENTSIGHT_FILTER_H
#define AGENTSIGHT_FILTER_H

#ifndef FILTER_TREE
#define FILTER_TREE 0
#endif
#ifndef FILTER_PID
#define FILTER_PID 0
#endif
#ifndef FILTER_UID
#define FILTER_UID -1
#endif
#ifndef FILTER_COMM_LEN
#define FILTER_COMM_LEN 0
#endif
#ifndef TRACED_MAX
#define TRACED_MAX 65536
#endif

#define COMM_LEN 16

#if FILTER_TREE
BPF_HASH(traced, u32, u8, TRACED_MAX);
#endif
#if FILTER_COMM_LEN > 0
BPF_HASH(named, u32, u8, TRACED_MAX);
#endif

// Whether a name (a task's comm) starts with FILTER_COMM.
static __always_inline int comm_prefix(const char *comm)
{
#if FILTER_COMM_LEN > 0
    const char want[] = FILTER_COMM;
#pragma unroll
    for (int i = 0; i < FILTER_COMM_LEN && i < COMM_LEN; i++) {
        if (comm[i] != want[i])
            return 0;
    }
#endif
    return 1;
}

// Whether process tgid's name matches FILTER_COMM (always true without a name filter).
static __always_inline int name_wanted(u32 tgid)
{
#if FILTER_COMM_LEN > 0
    return named.lookup(&tgid) != NULL;
#else
    return 1;
#endif
}

// Whether the current task is one of agentsight's own actors (their names, set as they start,
// begin with "agentsight: "). Machine-wide capture with no name filter leaves them out: an always-on
// collector would otherwise record and analyse its own reads of /proc, every few seconds. Asked for
// by pid, tree or name, they are reported like any other process.
static __always_inline int is_self(void)
{
#if !FILTER_TREE && !FILTER_PID && FILTER_COMM_LEN == 0
    char comm[COMM_LEN];
    const char self[] = "agentsight: ";
    bpf_get_current_comm(&comm, sizeof(comm));
#pragma unroll
    for (int i = 0; i < (int)sizeof(self) - 1; i++) {
        if (comm[i] != self[i])
            return 0;
    }
    return 1;
#else
    return 0;
#endif
}

// The pid/tree/uid part of the filter: everything but the name (and agentsight itself).
static __always_inline int pid_wanted(u32 tgid)
{
    if (is_self())
        return 0;
#if FILTER_TREE
    if (!traced.lookup(&tgid))
        return 0;
#elif FILTER_PID
    if (tgid != FILTER_PID)
        return 0;
#endif
#if FILTER_UID >= 0
    if ((u32)bpf_get_current_uid_gid() != (u32)FILTER_UID)
        return 0;
#endif
    return 1;
}

// The whole filter for process tgid (the current task's process).
static __always_inline int process_wanted(u32 tgid)
{
    return pid_wanted(tgid) && name_wanted(tgid);
}

// At sched_process_exec (the current task has its new comm): decide the name again.
// Returns whether the new name matches FILTER_COMM.
static __always_inline int filter_exec(u32 tgid)
{
#if FILTER_COMM_LEN > 0
    char comm[COMM_LEN];
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm_prefix(comm)) {
        u8 one = 1;
        named.update(&tgid, &one);
        return 1;
    }
    named.delete(&tgid);
    return 0;
#else
    return 1;
#endif
}

// A fork: the child of a traced process is traced, the child of a named one is named
// (it runs the same program until it execs).
static __always_inline void filter_fork(u32 parent_tgid, u32 child)
{
    u8 one = 1;
#if FILTER_TREE
    if (traced.lookup(&parent_tgid))
        traced.update(&child, &one);
#endif
#if FILTER_COMM_LEN > 0
    if (named.lookup(&parent_tgid))
        named.update(&child, &one);
#endif
}

// Forget a task: the whole process when its last thread exits, else the thread.
static __always_inline void filter_exit(u32 tgid, u32 tid, int group_dead)
{
    u32 key = group_dead ? tgid : tid;
    if (!group_dead && tid == tgid)
        return;
#if FILTER_TREE
    traced.delete(&key);
#endif
#if FILTER_COMM_LEN > 0
    named.delete(&key);
#endif
}

#endif
