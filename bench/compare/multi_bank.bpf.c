// Candidate (a) on the multi-counter spec: the generated program with one
// lookup of this CPU's bank (struct of COUNTERS_WIDTH u64) for all three counters.
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

struct counters_bank {
    u64 slot[COUNTERS_WIDTH];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, struct counters_bank);
    __uint(max_entries, MAX_CPUS);
} counters SEC(".maps");

static __always_inline int handle_sys_enter(struct pt_regs* regs, long int id) {
    u32 cpu = bpf_get_smp_processor_id();
    u32 lane = id & 3;
    struct counters_bank* bank = bpf_map_lookup_elem(&counters, &cpu);

    if (!bank)
        return 0;
    // syscall_multi_entries
    __atomic_fetch_add(&bank->slot[SYSCALL_MULTI_ENTRIES], 1, __ATOMIC_RELAXED);
    if (lane < 4) {
        // syscall_multi_lanes{lane=<lane>}
        __atomic_fetch_add(&bank->slot[SYSCALL_MULTI_LANES + lane], 1, __ATOMIC_RELAXED);
    }
    // syscall_multi_ids
    __atomic_fetch_add(&bank->slot[SYSCALL_MULTI_IDS], id, __ATOMIC_RELAXED);
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs* regs, long int id) {
    return handle_sys_enter(regs, id);
}

SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs* regs, long int id) {
    return handle_sys_enter(regs, id);
}

char LICENSE[] SEC("license") = "GPL";
