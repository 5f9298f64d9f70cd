// Rezolus' hand-written blockio/requests block_rq_complete twins with only
// the counters kept: no size histograms, no error classes, no requeue
// programs. The counting code is copied verbatim.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define COUNTER_GROUP_WIDTH 8
#define REQ_OP_BITS 8
#define REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* COUNTER_GROUP_WIDTH);
} counters SEC(".maps");

static int __always_inline handle_block_rq_complete(struct request* rq, int error,
                                                    unsigned int nr_bytes) {
    u32 idx, op;
    unsigned int cmd_flags;

    cmd_flags = BPF_CORE_READ(rq, cmd_flags);

    op = cmd_flags & REQ_OP_MASK;

    if (op < COUNTER_GROUP_WIDTH / 2) {
        idx = COUNTER_GROUP_WIDTH * bpf_get_smp_processor_id() + op;
        array_incr(&counters, idx);

        idx = idx + COUNTER_GROUP_WIDTH / 2;
        array_add(&counters, idx, nr_bytes);
    }

    return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request* rq, int error, unsigned int nr_bytes) {
    return handle_block_rq_complete(rq, error, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request* rq, int error, unsigned int nr_bytes) {
    return handle_block_rq_complete(rq, error, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
