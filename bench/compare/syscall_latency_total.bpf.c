// bench/compare.py: the timing code of Rezolus' hand-written syscall/latency
// recording into one histogram, for an equal-work comparison with the
// generated examples/syscall_total_latency.yml. Entry stores the time under
// the thread id with bpf_map_update_elem() into a MAX_PID array; exit skips
// negative ids, looks the start up, records now - start with histogram.h's
// histogram_incr() and clears the start. The original's syscall_lut lookup
// and its switch over 16 per-family histograms are left out.
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define HISTOGRAM_BUCKETS HISTOGRAM_BUCKETS_POW_3
#define HISTOGRAM_POWER 3
#define MAX_PID 4194304

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_PID);
    __type(key, u32);
    __type(value, u64);
} start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, HISTOGRAM_BUCKETS);
} total_latency SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter* args) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();

    bpf_map_update_elem(&start, &tid, &now, 0);
    return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit* args) {
    u32 tid = bpf_get_current_pid_tgid();
    u64* started;

    if (args->id < 0) {
        return 0;
    }

    started = bpf_map_lookup_elem(&start, &tid);
    if (!started || *started == 0) {
        return 0; // the entry was not seen
    }

    histogram_incr(&total_latency, HISTOGRAM_POWER, bpf_ktime_get_ns() - *started);
    *started = 0;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
