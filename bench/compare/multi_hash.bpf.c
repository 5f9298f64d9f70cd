// The multi-counter spec with a (preallocated, shared) HASH map keyed by slot
// instead of the per-CPU padded ARRAY bank: lookup, insert-if-missing, atomic add.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define SYSCALL_MULTI_ENTRIES 0
#define SYSCALL_MULTI_LANES 1
#define SYSCALL_MULTI_IDS 5

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} counters SEC(".maps");

static __always_inline void hash_add(void* map, u32 key, u64 value) {
    u64* elem = bpf_map_lookup_elem(map, &key);

    if (!elem) {
        u64 zero = 0;
        bpf_map_update_elem(map, &key, &zero, BPF_NOEXIST);
        elem = bpf_map_lookup_elem(map, &key);
        if (!elem)
            return;
    }
    __atomic_fetch_add(elem, value, __ATOMIC_RELAXED);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs* regs, long int id) {
    u32 lane = id & 3;

    hash_add(&counters, SYSCALL_MULTI_ENTRIES, 1);
    hash_add(&counters, SYSCALL_MULTI_LANES + lane, 1);
    hash_add(&counters, SYSCALL_MULTI_IDS, id);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
