// Rezolus' hand-written cpu/tlb_flush raw_tp program with the per-cgroup work
// removed (no sched_task_group reads, handle_new_cgroup, or cgroup arrays):
// exactly its per-CPU counting, for a like-for-like comparison.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define COUNTER_GROUP_WIDTH 8

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* COUNTER_GROUP_WIDTH);
} events SEC(".maps");

SEC("raw_tp/tlb_flush")
int BPF_PROG(tlb_flush, int reason, u64 pages) {
    u32 offset, idx;

    if (reason < 0 || reason >= COUNTER_GROUP_WIDTH) {
        return 0;
    }

    offset = COUNTER_GROUP_WIDTH * bpf_get_smp_processor_id();

    idx = reason + offset;

    array_incr(&events, idx);

    return 0;
}

char LICENSE[] SEC("license") = "GPL";
