// Benchmark (i): a one-key hash map updated by every CPU.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* counters keyed by slot id in a (preallocated) hash map */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} counters SEC(".maps");

static __always_inline void hash_incr(void* map, u32 key) {
    u64* elem = bpf_map_lookup_elem(map, &key);

    if (!elem) {
        u64 zero = 0;
        /* a concurrent insert may win the race; either way look it up again */
        bpf_map_update_elem(map, &key, &zero, BPF_NOEXIST);
        elem = bpf_map_lookup_elem(map, &key);
        if (!elem) {
            return;
        }
    }
    __atomic_fetch_add(elem, 1, __ATOMIC_RELAXED);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(hash_one, struct pt_regs* regs, long id) {
    hash_incr(&counters, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";

