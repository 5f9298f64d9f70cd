// Candidates (a)+(b) together.
// Hand-patched copy of the generated blockio/requests_counters program.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_CPUS 1024
#define COUNTERS_WIDTH 8
#define BLOCKIO_REQUESTS_OPERATIONS 0
#define BLOCKIO_REQUESTS_BYTES 4

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

static __always_inline int handle_block_rq_complete(u32 op, blk_status_t error,
                                                    unsigned int nr_bytes) {
    u32 cpu = bpf_get_smp_processor_id();
    struct counters_bank* bank = bpf_map_lookup_elem(&counters, &cpu);

    if (!bank)
        return 0;
    if (op < 4) {
        // blockio_requests_operations{op=<op>}
        __atomic_fetch_add(&bank->slot[BLOCKIO_REQUESTS_OPERATIONS + op], 1, __ATOMIC_RELAXED);
        // blockio_requests_bytes{op=<op>}
        __atomic_fetch_add(&bank->slot[BLOCKIO_REQUESTS_BYTES + op], nr_bytes, __ATOMIC_RELAXED);
    }
    return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
    return handle_block_rq_complete(rq->cmd_flags & 0xff, error, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
    return handle_block_rq_complete(BPF_CORE_READ(rq, cmd_flags) & 0xff, error, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
