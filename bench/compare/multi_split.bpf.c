// The multi-counter spec as one program per counter (what three separately
// generated single-counter samplers on the same hook would cost), each in the
// generated style, sharing one per-CPU bank.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define COUNTERS_WIDTH 8
#define SYSCALL_MULTI_ENTRIES 0
#define SYSCALL_MULTI_LANES 1
#define SYSCALL_MULTI_IDS 5

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* COUNTERS_WIDTH);
} counters SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_entries, struct pt_regs* regs, long int id) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 idx = COUNTERS_WIDTH * cpu + SYSCALL_MULTI_ENTRIES;

    array_incr(&counters, idx);
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_lanes, struct pt_regs* regs, long int id) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 lane = id & 3;
    u32 idx;

    if (lane < 4) {
        idx = COUNTERS_WIDTH * cpu + SYSCALL_MULTI_LANES + lane;
        array_incr(&counters, idx);
    }
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_ids, struct pt_regs* regs, long int id) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 idx = COUNTERS_WIDTH * cpu + SYSCALL_MULTI_IDS;

    array_add(&counters, idx, id);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
