// Which processes a program reports on, decided in the kernel.
// Shared by process.bpf.c and stdio.bpf.c; user space sets the macros below.
//
//   FILTER_TREE  only tgids in the `traced` map. User space seeds it (a pid and
//                its descendants, a pid set); sched_process_fork adds the child of
//                a traced process and the exit path removes it, so a process tree
//                is followed without user space in the loop.
//   FILTER_PID   only this tgid (0 = any), when not following a tree.
//   FILTER_UID   only this uid (-1 = any).
//   FILTER_COMM  a string literal; only tasks whose comm starts with it.
//                FILTER_COMM_LEN is its length (0 = no comm filter).
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
#define TRACED_MAX 16384
#endif

#define COMM_LEN 16

#if FILTER_TREE
BPF_HASH(traced, u32, u8, TRACED_MAX);
#endif

static __always_inline int comm_matches(const char *comm)
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

// The pid/tree/uid part of the filter: everything but comm.
static __always_inline int pid_wanted(u32 tgid)
{
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

// Follow a fork: the child of a traced process is traced too.
static __always_inline void tree_fork(u32 parent_tgid, u32 child)
{
#if FILTER_TREE
    if (traced.lookup(&parent_tgid)) {
        u8 one = 1;
        traced.update(&child, &one);
    }
#endif
}

// Forget a task: the whole process when its last thread exits, else the thread.
static __always_inline void tree_exit(u32 tgid, u32 tid, int group_dead)
{
#if FILTER_TREE
    if (group_dead)
        traced.delete(&tgid);
    else if (tid != tgid)
        traced.delete(&tid);
#endif
}
