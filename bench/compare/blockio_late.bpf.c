// Candidate (d) on blockio/requests_counters: the generated program with the CPU
// id read inside the label guard (after the op is known to be in range), as the
// hand-written program does.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024

// counters: one bank of COUNTERS_WIDTH u64 slots per CPU, 8 used, padded to whole 64-byte
// cachelines so CPUs never write the same line: COUNTERS_WIDTH = roundup(8, 8). Index:
// COUNTERS_WIDTH * cpu + slot; the vector in mod.rs lists the same slots in the same order.
//     0  blockio_requests_operations{op=read}
//     1  blockio_requests_operations{op=write}
//     2  blockio_requests_operations{op=flush}
//     3  blockio_requests_operations{op=discard}
//     4  blockio_requests_bytes{op=read}
//     5  blockio_requests_bytes{op=write}
//     6  blockio_requests_bytes{op=flush}
//     7  blockio_requests_bytes{op=discard}
#define COUNTERS_WIDTH 8
#define BLOCKIO_REQUESTS_OPERATIONS 0
#define BLOCKIO_REQUESTS_BYTES 4

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS* COUNTERS_WIDTH);
} counters SEC(".maps");

static __always_inline int handle_block_rq_complete(struct request* rq, blk_status_t error,
                                                    unsigned int nr_bytes) {
    u32 op = BPF_CORE_READ(rq, cmd_flags) & 0xff;
    u32 idx;

    if (op < 4) {
        u32 cpu = bpf_get_smp_processor_id();
        // blockio_requests_operations{op=<op>}
        idx = COUNTERS_WIDTH * cpu + BLOCKIO_REQUESTS_OPERATIONS + op;
        array_incr(&counters, idx);
        // blockio_requests_bytes{op=<op>}
        idx = COUNTERS_WIDTH * cpu + BLOCKIO_REQUESTS_BYTES + op;
        array_add(&counters, idx, nr_bytes);
    }

    return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
    return handle_block_rq_complete(rq, error, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
    return handle_block_rq_complete(rq, error, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
