// Candidate (a) on network/traffic: the generated program (raw_tp, BPF_CORE_READ)
// with one map lookup per bank: an ARRAY of MAX_CPUS banks, each a struct of
// COUNTERS_WIDTH u64. Same mmap bytes as the u64 layout (slot W*cpu+i).
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define COUNTERS_WIDTH 8
#define NETWORK_BYTES 0
#define NETWORK_PACKETS 2

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

SEC("raw_tp/netif_receive_skb")
int BPF_PROG(netif_receive_skb, struct sk_buff* skb) {
    u32 cpu = bpf_get_smp_processor_id();
    u64 len = BPF_CORE_READ(skb, len);
    struct counters_bank* bank = bpf_map_lookup_elem(&counters, &cpu);

    if (!bank)
        return 0;
    __atomic_fetch_add(&bank->slot[NETWORK_BYTES], len, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bank->slot[NETWORK_PACKETS], 1, __ATOMIC_RELAXED);
    return 0;
}

SEC("raw_tp/net_dev_start_xmit")
int BPF_PROG(net_dev_start_xmit, const struct sk_buff* skb, const struct net_device* dev) {
    u32 cpu = bpf_get_smp_processor_id();
    u64 len = BPF_CORE_READ(skb, len);
    struct counters_bank* bank = bpf_map_lookup_elem(&counters, &cpu);

    if (!bank)
        return 0;
    __atomic_fetch_add(&bank->slot[NETWORK_BYTES + 1], len, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bank->slot[NETWORK_PACKETS + 1], 1, __ATOMIC_RELAXED);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
