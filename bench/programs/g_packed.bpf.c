// Benchmark (g): per-CPU slots packed into one cacheline (index = cpu), i.e. false sharing.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS);
} counters SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(packed, struct pt_regs* regs, long id) {
    array_incr(&counters, bpf_get_smp_processor_id());
    return 0;
}

char LICENSE[] SEC("license") = "GPL";

