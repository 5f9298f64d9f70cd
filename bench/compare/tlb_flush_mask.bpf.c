// Candidate (c) on cpu/tlb_flush_reasons: branch-free index clamping. The
// label has 6 values in an 8-wide bank, so 'reason & (EVENTS_WIDTH - 1)' keeps
// every index inside this CPU's bank without a compare; reasons 6 and 7 land
// in padding slots nobody reads, but reasons >= 8 would wrap onto real slots
// (a semantic change the generated 'reason < 6' check does not have).
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define EVENTS_WIDTH 8
#define CPU_TLB_FLUSH_REASONS 0

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* EVENTS_WIDTH);
} events SEC(".maps");

SEC("raw_tp/tlb_flush")
int BPF_PROG(tlb_flush, int reason, long unsigned int pages) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 idx = EVENTS_WIDTH * cpu + CPU_TLB_FLUSH_REASONS + ((u32)reason & (EVENTS_WIDTH - 1));

    array_incr(&events, idx);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
