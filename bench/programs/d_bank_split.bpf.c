// Benchmark (d): the same two counters split over two programs on one hook.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define COUNTER_GROUP_WIDTH 8
#define MAX_CPUS 1024

/* per-CPU padded bank: CPU n owns entries [8n, 8n+8) = one 64-byte cacheline */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS * COUNTER_GROUP_WIDTH);
} counters SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(bank_split_a, struct pt_regs* regs, long id) {
    u32 offset = COUNTER_GROUP_WIDTH * bpf_get_smp_processor_id();

    array_incr(&counters, offset + 0);
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(bank_split_b, struct pt_regs* regs, long id) {
    u32 offset = COUNTER_GROUP_WIDTH * bpf_get_smp_processor_id();

    array_incr(&counters, offset + 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";

