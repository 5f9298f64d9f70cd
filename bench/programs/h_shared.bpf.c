// Benchmark (h): a single counter slot shared by every CPU (true sharing).
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, 1);
} counters SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(shared, struct pt_regs* regs, long id) {
    array_incr(&counters, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";

