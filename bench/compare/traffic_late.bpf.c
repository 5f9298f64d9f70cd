// Candidate (d) on network/traffic: the generated program with the CPU id read
// after the event's fields (BPF_CORE_READ first, then bpf_get_smp_processor_id),
// as the hand-written program does: saves the register copy across the call.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024

// counters: one bank of COUNTERS_WIDTH u64 slots per CPU, 4 used, padded to whole 64-byte
// cachelines so CPUs never write the same line: COUNTERS_WIDTH = roundup(4, 8). Index:
// COUNTERS_WIDTH * cpu + slot; the vector in mod.rs lists the same slots in the same order.
//     0  network_bytes{direction=receive}
//     1  network_bytes{direction=transmit}
//     2  network_packets{direction=receive}
//     3  network_packets{direction=transmit}
#define COUNTERS_WIDTH 8
#define NETWORK_BYTES 0
#define NETWORK_PACKETS 2

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* COUNTERS_WIDTH);
} counters SEC(".maps");

SEC("raw_tp/netif_receive_skb")
int BPF_PROG(netif_receive_skb, struct sk_buff* skb) {
    u64 len = BPF_CORE_READ(skb, len);
    u32 cpu = bpf_get_smp_processor_id();
    u32 idx;

    // network_bytes{direction=receive}
    idx = COUNTERS_WIDTH * cpu + NETWORK_BYTES;
    array_add(&counters, idx, len);
    // network_packets{direction=receive}
    idx = COUNTERS_WIDTH * cpu + NETWORK_PACKETS;
    array_incr(&counters, idx);

    return 0;
}

SEC("raw_tp/net_dev_start_xmit")
int BPF_PROG(net_dev_start_xmit, const struct sk_buff* skb, const struct net_device* dev) {
    u64 len = BPF_CORE_READ(skb, len);
    u32 cpu = bpf_get_smp_processor_id();
    u32 idx;

    // network_bytes{direction=transmit}
    idx = COUNTERS_WIDTH * cpu + NETWORK_BYTES + 1;
    array_add(&counters, idx, len);
    // network_packets{direction=transmit}
    idx = COUNTERS_WIDTH * cpu + NETWORK_PACKETS + 1;
    array_incr(&counters, idx);

    return 0;
}

char LICENSE[] SEC("license") = "GPL";
