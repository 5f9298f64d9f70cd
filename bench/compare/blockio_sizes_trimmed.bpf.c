// bench/compare.py: the request-size histograms of Rezolus' hand-written
// blockio/requests with nothing else in the program, for an equal-work
// comparison with the generated examples/blockio_request_sizes.yml. It does
// what that sampler does for sizes: the request flags read through CO-RE in
// both twins, the low 8 bits as the operation, completions that moved no bytes
// skipped, the bucket from histogram.h's value_to_index(), one array_incr()
// into the operation's map. The counters, error classes and requeue programs
// of the original are left out.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define HISTOGRAM_BUCKETS HISTOGRAM_BUCKETS_POW_3
#define HISTOGRAM_POWER 3
#define OP_BITS_MASK 0xff

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, HISTOGRAM_BUCKETS);
} read_size SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, HISTOGRAM_BUCKETS);
} write_size SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, HISTOGRAM_BUCKETS);
} flush_size SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, HISTOGRAM_BUCKETS);
} discard_size SEC(".maps");

static __always_inline int record_request_size(struct request* rq, unsigned int nr_bytes) {
    u32 op = BPF_CORE_READ(rq, cmd_flags) & OP_BITS_MASK;
    u32 bucket;

    // a completion that moved no bytes (a flush) has no size to record
    if (nr_bytes == 0) {
        return 0;
    }

    bucket = value_to_index(nr_bytes, HISTOGRAM_POWER);
    switch (op) {
    case REQ_OP_READ:
        array_incr(&read_size, bucket);
        break;
    case REQ_OP_WRITE:
        array_incr(&write_size, bucket);
        break;
    case REQ_OP_FLUSH:
        array_incr(&flush_size, bucket);
        break;
    case REQ_OP_DISCARD:
        array_incr(&discard_size, bucket);
        break;
    }
    return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request* rq, int error, unsigned int nr_bytes) {
    return record_request_size(rq, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request* rq, int error, unsigned int nr_bytes) {
    return record_request_size(rq, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
