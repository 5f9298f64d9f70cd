// Candidate (a) on cpu/tlb_flush_reasons: the generated program with one
// lookup of this CPU's bank (struct of EVENTS_WIDTH u64) instead of a u64 slot.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define EVENTS_WIDTH 8
#define CPU_TLB_FLUSH_REASONS 0

struct events_bank {
    u64 slot[EVENTS_WIDTH];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, struct events_bank);
    __uint(max_entries, MAX_CPUS);
} events SEC(".maps");

SEC("raw_tp/tlb_flush")
int BPF_PROG(tlb_flush, int reason, long unsigned int pages) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 reason_value = reason;
    struct events_bank* bank = bpf_map_lookup_elem(&events, &cpu);

    if (!bank)
        return 0;
    if (reason_value < 6) {
        __atomic_fetch_add(&bank->slot[CPU_TLB_FLUSH_REASONS + reason_value], 1, __ATOMIC_RELAXED);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
